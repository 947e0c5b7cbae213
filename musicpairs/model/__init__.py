"""pix2pix for piano rolls: the networks, training, checkpoints, evaluation against
baselines, and conversion of MIDI files."""

from musicpairs.model.checkpoint import CheckpointError, load_checkpoint, load_generator
from musicpairs.model.convert import ConvertError, convert
from musicpairs.model.evaluate import EvaluateError, Generator, evaluate, format_report
from musicpairs.model.patchgan import PatchGAN
from musicpairs.model.pretrained import PretrainedError, load_pretrained, models
from musicpairs.model.quickstart import quickstart
from musicpairs.model.train import Pix2Pix, TrainError, train
from musicpairs.model.unet import UNet

__all__ = ["CheckpointError", "ConvertError", "EvaluateError", "Generator", "PatchGAN",
           "Pix2Pix", "PretrainedError", "TrainError", "UNet", "convert", "evaluate",
           "format_report", "load_checkpoint", "load_generator", "load_pretrained", "models",
           "quickstart", "train"]
