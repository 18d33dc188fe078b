"""GAN inversion: real slices -> the latents (and noise maps) that the generator renders them from."""
