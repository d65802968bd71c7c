"""Framework helpers with no GAN logic: image conversion, atomic files, devices."""
