"""Reading and writing images, plates and tables."""
