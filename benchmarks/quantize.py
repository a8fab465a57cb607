"""Would int8 quantization make the CPU network fast enough? fp32 against int8 onnxruntime.

Quantizes the model's ONNX graph statically (QDQ, per-channel int8 weights, uint8
activations, calibrated on patches of the mnfinder training split) and measures, in one run
and alternately so the ratio holds on a noisy machine, the network time of both graphs on
the same fields, then the accuracy of both on the validation split (post-processing as the
model's own).

    python benchmarks/quantize.py --data ../shared/data/mnfinder [--threads 2]

Writes ``benchmarks/results/quantize.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cellseg_hcs as cs
from cellseg_hcs.runtime.export import cached_onnx
from cellseg_hcs.training.data import ImageMaskFolder
from cellseg_hcs.training.evaluate import evaluate_model


def calibration_patches(model, data, count: int = 12, size: int = 256, seed: int = 0):
    rng = np.random.default_rng(seed)
    for sample in list(data)[:count]:
        x = model.prepare(sample.image)
        y0 = int(rng.integers(0, max(x.shape[-2] - size, 1)))
        x0 = int(rng.integers(0, max(x.shape[-1] - size, 1)))
        yield {
            "image": np.ascontiguousarray(
                x[None, :, y0 : y0 + size, x0 : x0 + size], dtype=np.float32
            )
        }


def quantize(model, training, out: Path) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    patches = list(calibration_patches(model, training))  # read before leaving the cwd

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.patches = iter(patches)

        def get_next(self):
            return next(self.patches, None)

    prepared = out.with_suffix(".pre.onnx")
    # The quantizer leaves scratch files (shape inference, external data) in the working
    # directory: run it inside the output's folder.
    with contextlib.chdir(out.parent):
        quant_pre_process(str(cached_onnx(model)), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return out


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class SessionModel:
    """The model with its network replaced by an onnxruntime session (for scoring)."""

    def __init__(self, model, runner) -> None:
        self.model, self.runner = model, runner

    def predict_maps(self, image):
        x = self.model.prepare(image)[None].astype(np.float32)
        return self.runner.run(None, {"image": x})[0][0]

    def prepare(self, image):
        return self.model.prepare(image)

    def labels_from_maps(self, maps, image=None, **settings):
        return self.model.labels_from_maps(maps, image, **settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the mnfinder folder")
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quantize.json"))
    args = parser.parse_args(argv)
    model = cs.load_model(args.model)
    images, labels = args.data / "images", args.data / "nuclei_labels"
    training = ImageMaskFolder(images, labels, pattern="training__*")
    validation = ImageMaskFolder(images, labels, pattern="validation__*")
    fields = [model.prepare(s.image)[None].astype(np.float32) for s in validation]
    megapixels = sum(f.shape[-1] * f.shape[-2] for f in fields) / 1e6

    with tempfile.TemporaryDirectory() as folder:
        int8_path = quantize(model, training, Path(folder) / "int8.onnx")
        runners = {
            "fp32": session(cached_onnx(model), args.threads),
            "int8": session(int8_path, args.threads),
        }
        seconds = {name: [] for name in runners}
        for runner in runners.values():  # warm-up
            runner.run(None, {"image": fields[0]})
        for _ in range(args.repeats):
            for name, runner in runners.items():
                started = time.perf_counter()
                for field in fields:
                    runner.run(None, {"image": field})
                seconds[name].append(time.perf_counter() - started)
        scores = {
            name: evaluate_model(SessionModel(model, runner), validation)
            for name, runner in runners.items()
        }

    result = {
        "command": "python " + " ".join(["benchmarks/quantize.py", *(argv or sys.argv[1:])]),
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "threads": args.threads,
        },
        "model": model.hash,
        "megapixels_per_pass": megapixels,
        "network_mp_per_s": {n: megapixels / float(np.median(s)) for n, s in seconds.items()},
        "validation": {n: {k: s[k] for k in ("f1", "ap")} for n, s in scores.items()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    result["int8_speedup"] = result["network_mp_per_s"]["int8"] / result["network_mp_per_s"]["fp32"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
