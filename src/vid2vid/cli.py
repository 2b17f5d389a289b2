"""The `vid2vid` command line: each subcommand is a thin call into the library."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def cmd_convert(args: argparse.Namespace) -> None:
    from vid2vid.checkpoint import save_generator
    from vid2vid.compat.imaginaire import load_generator

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    model = load_generator(args.checkpoint, args.config, use_ema=not args.no_ema)
    try:
        save_generator(model, out, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({type(model).__name__}, {params:,} parameters)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vid2vid", description="Video-to-video synthesis.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    convert = sub.add_parser("convert", help="convert another implementation's checkpoint to ours")
    convert_sub = convert.add_subparsers(dest="source", required=True)
    imaginaire = convert_sub.add_parser("imaginaire", help="an NVIDIA imaginaire checkpoint")
    imaginaire.add_argument("checkpoint", help="imaginaire checkpoint (.pt/.pth)")
    imaginaire.add_argument("--config", required=True, help="the imaginaire YAML it was trained with")
    imaginaire.add_argument("-o", "--output", required=True, help="output folder (model.safetensors + model.json)")
    imaginaire.add_argument("--overwrite", action="store_true", help="replace an existing model in the folder")
    imaginaire.add_argument("--no-ema", action="store_true", help="take the trained weights, not their average")
    imaginaire.set_defaults(run=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (UserError, ValueError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
