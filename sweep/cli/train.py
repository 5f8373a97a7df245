"""`train`, `predict` and `samples`: the commands a Pytorch-UNet user already knows."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import typing
from pathlib import Path

from PIL import Image

from data_pipeline.folder import UNREADABLE
from training.config import TrainConfig
from training.settings import ConfigError, help_of, load_yaml, require

log = logging.getLogger(__name__)

# Pytorch-UNet's flag names for our settings, beside the generated --field-name flags.
ALIASES = {
    "epochs": ["-e"], "batch_size": ["-b"], "lr": ["-l", "--learning-rate"],
    "load": ["-f"], "scale": ["-s"], "val_percent": ["-v", "--validation"], "classes": ["-c"],
}


def add_parser(subparsers) -> None:
    train = subparsers.add_parser("train", help="train one model (Pytorch-UNet's train.py)",
                                  description="Train UNet or SegNet. Flags override --config.")
    train.add_argument("--config", help="YAML file of settings (flags override it)")
    add_config_flags(train)
    train.set_defaults(func=run_train)

    predict = subparsers.add_parser("predict", help="predict masks (Pytorch-UNet's predict.py)")
    predict.add_argument("-m", "--model", default="MODEL.pth", metavar="FILE",
                         help="checkpoint: this project's or Pytorch-UNet's")
    predict.add_argument("-i", "--input", nargs="+", required=True, metavar="INPUT")
    predict.add_argument("-o", "--output", nargs="+", metavar="OUTPUT",
                         help="mask files (default: INPUT_OUT.png)")
    predict.add_argument("--viz", action="store_true",
                         help="also write INPUT_viz.png: image, mask and overlay side by side")
    predict.add_argument("-n", "--no-save", action="store_true", help="do not save the masks")
    predict.add_argument("-t", "--mask-threshold", type=float, default=0.5)
    predict.add_argument("-s", "--scale", type=float, default=1.0)
    predict.add_argument("--device", default="auto")
    predict.set_defaults(func=run_predict)

    samples = subparsers.add_parser("samples", help="write a few image/mask pairs as PNGs")
    samples.add_argument("--config", help="YAML file of settings")
    samples.add_argument("-n", "--count", type=int, default=8)
    add_config_flags(samples)
    samples.set_defaults(func=run_samples)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; None defaults tell us which flags were given."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("settings (docs/SETTINGS.md)")
    for field in dataclasses.fields(TrainConfig):
        names = ALIASES.get(field.name, []) + ["--" + field.name.replace("_", "-")]
        # argparse %-formats help text: "10 %" must reach it as "10 %%".
        text = f"{help_of(field)} (default: {field.default!r})".replace("%", "%%")
        kind = hints[field.name]
        if kind is bool:
            group.add_argument(*names, dest=field.name, default=None, help=text,
                               action=argparse.BooleanOptionalAction)
        else:
            group.add_argument(*names, dest=field.name, type=kind, default=None,
                               metavar=field.name.upper(), help=text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = load_yaml(args.config) if args.config else {}
    if args.config and not values:
        raise ConfigError(f"{args.config}: empty settings file (no setting in it)")
    if values:
        TrainConfig.from_dict(values, str(args.config))  # name the file in errors
    for field in dataclasses.fields(TrainConfig):
        if getattr(args, field.name) is not None:
            values[field.name] = getattr(args, field.name)
    return TrainConfig.from_dict(values, "command line")


def run_train(args: argparse.Namespace) -> int:
    from training.atomic import check_writable_folder
    from training.determinism import resolve_device
    from training.loop import train

    config = config_from_args(args)
    check_writable_folder(config.out_dir, "out_dir")  # before the data is decoded
    config.check_cache_dir()
    resolve_device(config.device)  # a missing GPU fails before the data is decoded
    data = config.load_data()
    log.info("data: %d images %s, model: %s width %d, out: %s", len(data),
             data.describe_sizes(), config.model, config.width, config.out_dir)
    result = train(config, data)
    best = result.best
    log.info("best val_dice %.4f at epoch %d; checkpoints in %s", best["val_dice"],
             best["epoch"], Path(config.out_dir) / "checkpoints")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from training.predict import check_image_size, load_predictor, predict_mask, visualise

    if args.output and len(args.output) != len(args.input):
        raise ConfigError(f"{len(args.input)} inputs but {len(args.output)} outputs")
    # NaN fails both comparisons, so these also refuse it (and inf, for the scale).
    require(0 < args.scale <= 4, "command line", "--scale", args.scale, "in (0, 4]")
    require(0 <= args.mask_threshold <= 1, "command line", "--mask-threshold",
            args.mask_threshold, "between 0 and 1")
    predictor = load_predictor(args.model, args.device)
    outputs = args.output or [str(Path(p).with_name(Path(p).stem + "_OUT.png"))
                              for p in args.input]
    for source, target in zip(args.input, outputs):
        try:
            image = Image.open(source)
            image.load()
        except UNREADABLE as error:
            detail = (str(error).splitlines() or [""])[0][:100]
            raise ConfigError(f"{source}: cannot read image ({type(error).__name__}: "
                              f"{detail})") from None
        check_image_size(predictor, image, args.scale, source)
        mask = predict_mask(predictor, image, args.scale, args.mask_threshold)
        if not args.no_save:
            Image.fromarray(mask).save(target)
            log.info("mask: %s", target)
        if args.viz:
            viz = visualise(image, mask, Path(target).with_name(Path(source).stem + "_viz.png"))
            log.info("visualisation: %s", viz)
    return 0


def run_samples(args: argparse.Namespace) -> int:
    from data_pipeline.samples import write_samples

    config = config_from_args(args)
    written = write_samples(config.load_data(), Path(config.out_dir) / "samples", args.count)
    log.info("wrote %d files; contact sheet: %s", len(written), written[-1] if written else "-")
    return 0
