"""Pure image and mask maths: resize modes, masks, tiles, colour. No device, I/O or globals."""
