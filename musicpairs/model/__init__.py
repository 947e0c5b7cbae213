"""pix2pix for piano rolls: the networks, training, checkpoints."""

from musicpairs.model.checkpoint import CheckpointError, load_checkpoint, load_generator
from musicpairs.model.patchgan import PatchGAN
from musicpairs.model.train import Pix2Pix, TrainError, train
from musicpairs.model.unet import UNet

__all__ = ["CheckpointError", "PatchGAN", "Pix2Pix", "TrainError", "UNet", "load_checkpoint",
           "load_generator", "train"]
