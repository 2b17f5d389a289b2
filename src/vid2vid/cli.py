"""The `vid2vid` command line: each subcommand is a thin call into the library."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
import warnings
from dataclasses import replace
from pathlib import Path

from vid2vid.data.detector import MODELS_ENV, OPENCV_FIX, MissingExtra
from vid2vid.errors import one_line, shown


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a job scheduler's stop): unwound as Ctrl-C is, so that nothing partial is left."""


def _raise_terminated(signum, frame):
    raise Terminated()


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line like every other error of the command line."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


# Every number a user types is bounded before use: past these, a value is a typo, not a wish (a billion frames,
# a learning rate of 1e30), and would fail deep inside instead of here.
MOST = 10**9


def whole_number(minimum: int, maximum: int = MOST):
    """An argparse type: a whole number from minimum to maximum."""
    def parse(text: str) -> int:
        try:
            value = int(text) if len(text) <= 30 else None
        except ValueError:
            value = None
        if value is None:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {shown(text)}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:,}, got {shown(text)}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}, got {shown(text)}")
        return value
    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)
finetune_count = whole_number(0, 100_000)  # imaginaire's inference tunes 100 steps
seed_int = whole_number(0, 2**32 - 1)  # what numpy's and torch's generators both take


def number_in(low: float, high: float):
    """An argparse type: a number above low, at most high."""
    def parse(text: str) -> float:
        try:
            value = float(text) if len(text) <= 30 else None
        except ValueError:
            value = None
        if value is None:
            raise argparse.ArgumentTypeError(f"expected a number, got {shown(text)}")
        if not value > low:  # also NaN
            above = "a positive number" if low == 0 else f"above {low:g}"
            raise argparse.ArgumentTypeError(f"must be {above}, got {shown(text)}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {shown(text)}")
        return value
    return parse


positive_float = number_in(0, 1e9)
learning_rate = number_in(0, 1.0)


def cmd_convert(args: argparse.Namespace) -> None:
    from vid2vid.checkpoint import save_generator
    from vid2vid.compat.imaginaire import load_config, load_discriminators, load_generator, read_checkpoint
    from vid2vid.files import refuse_overlap
    from vid2vid.finetune import save_discriminators

    out = Path(args.output)
    refuse_overlap([("output folder", out)], [("checkpoint", args.checkpoint), ("config", args.config)])
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    load_config(args.config)  # its mistakes first: reading the checkpoint can take a minute
    raw = read_checkpoint(args.checkpoint)  # read once: a training checkpoint can be gigabytes
    model = load_generator(args.checkpoint, args.config, use_ema=not args.no_ema, raw=raw)
    discriminators = load_discriminators(args.checkpoint, args.config, model, raw=raw)
    try:
        save_generator(model, out, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    params = sum(p.numel() for p in model.parameters())
    also = ""
    if discriminators is not None:  # what `generate --finetune` needs to fine-tune adversarially
        save_discriminators(out, *discriminators)
        also = f", discriminators {sum(p.numel() for p in discriminators[1].parameters()):,} parameters"
    print(f"wrote {out} ({type(model).__name__}, {params:,} parameters{also})")


def parse_size(text: str) -> tuple[int, int]:
    """'256x128' (height x width) or '256' (square) -> (height, width)."""
    try:
        parts = [int(v) for v in text.lower().split("x")] if len(text) <= 30 else []
    except ValueError:
        parts = []
    if not parts:
        raise argparse.ArgumentTypeError(f"size must be HxW or N, got {shown(text)}")
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 8 or max(parts) > 8192:
        raise argparse.ArgumentTypeError(f"size must be HxW with sides from 8 to 8192, got {shown(text)}")
    return parts[0], parts[1]


def cmd_prepare(args: argparse.Namespace) -> None:
    from vid2vid.data.prepare import prepare

    reports = prepare(args.inputs, args.output, args.task, overwrite=args.overwrite,
                      extract_labels=not args.no_labels, flow=not args.no_flow, every=args.every,
                      max_frames=args.max_frames, multi_person=args.multi_person, label_colours=args.label_colours,
                      landmarks=args.landmarks, progress=not args.quiet)
    for r in reports:
        extra = f", {r.skipped_no_face} without a face left out" if r.skipped_no_face else ""
        if r.jitter is not None:
            extra += (f"; landmark jitter {r.jitter:.4f} of the inter-ocular distance (median distance from a "
                      "5-frame moving average)")
        print(f"{args.output}: sequence {r.sequence}: {r.written} frames written, "
              f"{r.skipped_done} already there{extra}")


def cmd_detector_models(args: argparse.Namespace) -> None:
    from vid2vid.data.detector import MODEL_URLS, fetch_models, models_folder

    folder = Path(args.dir) if args.dir else models_folder()
    if args.fetch:
        for path in fetch_models(folder, args.source):
            print(f"wrote {path}")
    for name in MODEL_URLS:
        print(f"{folder / name}: {'present' if (folder / name).is_file() else 'missing'}")


def cmd_synth(args: argparse.Namespace) -> None:
    from vid2vid.data.writer import write_synthetic

    written = write_synthetic(args.kind, args.output, sequences=args.sequences, frames=args.frames, size=args.size,
                            seed=args.seed, first_index=args.first_index, motion_offset=args.motion_offset,
                            overwrite=args.overwrite,
                            progress=not args.quiet)
    print(f"{args.output}: {args.kind}, {args.sequences} sequences of {args.frames} frames "
          f"({written} frames written)")


def cmd_train(args: argparse.Namespace) -> None:
    from vid2vid.train import TrainingError, load_train_config, train

    run_dir = Path(args.run_dir) if args.run_dir else None
    if args.resume:
        run_dir = Path(args.resume)
        config = args.config or run_dir / "config.yaml"
        if not run_dir.is_dir() or not (run_dir / "config.yaml").is_file():
            raise UserError(f"{run_dir}: not a training run folder (no config.yaml); cannot resume")
    elif args.config is None:
        raise UserError("train needs --config CONFIG.yaml (or --resume RUN_DIR)")
    else:
        config = args.config
        run_dir = run_dir or Path("runs") / Path(args.config).stem
    if args.resume and args.data:
        raise UserError("--data cannot change the data of a run being resumed")
    data_root = args.data
    if args.resume:  # a changed --config (say, a later time limit) still trains on the run's data
        data_root = load_train_config(run_dir / "config.yaml").data_root
    cfg = load_train_config(config, data_root=data_root)
    if args.no_perceptual:
        cfg = replace(cfg, loss=replace(cfg.loss, weights=replace(cfg.loss.weights, perceptual=0.0)))
    try:
        result = train(cfg, run_dir, resume=bool(args.resume), overwrite=args.overwrite, progress=not args.quiet)
    except TrainingError as exc:
        raise UserError(str(exc)) from None
    print(f"{run_dir}: trained to iteration {result.iteration}; generator: {result.last_checkpoint}")


def cmd_generate(args: argparse.Namespace) -> None:
    from vid2vid.generate import generate

    try:
        report = generate(args.checkpoint, args.driving, args.output, args.reference or [], sequence=args.sequence,
                          size=args.size, frames_dir=args.frames_dir, side_by_side=args.side_by_side,
                          max_frames=args.max_frames, fps=args.fps, overwrite=args.overwrite, device=args.device,
                          precision=args.precision, compile_model=args.compile, progress=not args.quiet,
                          finetune_steps=args.finetune, finetune_lr=args.finetune_lr,
                          finetune_adversarial=args.finetune_adversarial, finetune_augment=args.finetune_augment,
                          seed=args.seed, reference_backdrop=args.reference_backdrop,
                          face_proportions=args.face_proportions, feedback=args.feedback,
                          reference_warp=args.reference_warp)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {report.output} ({report.frames} frames, {report.frames / max(report.seconds, 1e-9):.1f} frames/s)")


def cmd_live(args: argparse.Namespace) -> None:
    from vid2vid.live import run_live

    checkpoint = args.checkpoint
    if checkpoint is None:
        from vid2vid.pretrained import shipped_model
        checkpoint = shipped_model()
        print(f"vid2vid live: no --checkpoint, using the shipped dancer model {checkpoint}", file=sys.stderr)
    try:
        report = run_live(checkpoint, args.source, args.output, args.reference or [], overwrite=args.overwrite,
                          side_by_side=args.side_by_side, max_frames=args.max_frames, seconds=args.seconds,
                          pace=False if args.every_frame else None, device=args.device, precision=args.precision,
                          finetune_steps=args.finetune, backdrop=args.reference_backdrop)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    print(f"vid2vid live: {report.line()}")
    if args.output:
        print(f"wrote {args.output}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from vid2vid.evaluate import evaluate

    try:
        report = evaluate(args.checkpoint, args.data, args.output, args.K, references=args.references,
                          sequences=args.sequence, max_frames=args.max_frames, size=args.size,
                          inception=args.inception, i3d=args.i3d, pose_error=not args.no_pose_error,
                          overwrite=args.overwrite, device=args.device, progress=not args.quiet,
                          finetune_steps=args.finetune, finetune_lr=args.finetune_lr,
                          finetune_adversarial=args.finetune_adversarial, seed=args.seed)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    for key, summary in report["results"].items():
        scores = ", ".join(f"{name} {summary[name]:.4g}" for name in ("psnr", "ssim", "warping_error", "pose_error",
                                                                     "fid", "fvd") if summary.get(name) is not None)
        print(f"{key}: {scores}")
    print(f"wrote {Path(args.output) / 'metrics.json'} and {Path(args.output) / 'report.html'}")


def cmd_export(args: argparse.Namespace) -> None:
    from vid2vid.export import export_onnx

    try:
        description = export_onnx(args.checkpoint, args.output, size=args.size, k=args.K, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    files = ", ".join(g["file"] for g in description["graphs"])
    print(f"wrote {args.output}: {files} and export.json ({description['size'][0]}x{description['size'][1]})")


def cmd_serve(args: argparse.Namespace) -> None:
    from vid2vid.serve import LOOPBACK_NAMES, Limits, serve

    if args.host not in LOOPBACK_NAMES:
        print(f"warning: serving on {args.host}: anyone who can reach this machine can use the page", file=sys.stderr)
    limits = Limits(max_upload_mb=args.max_upload_mb, max_frames=args.max_frames, max_resolution=args.max_resolution,
                    max_input_resolution=args.max_input_resolution, max_references=args.max_references,
                    max_queue=args.max_queue, max_finetune_steps=args.max_finetune_steps, max_live=args.max_live,
                    max_live_frame_kb=args.max_live_frame_kb)
    if args.checkpoint is None:
        from vid2vid.pretrained import MODELS, shipped_model
        checkpoints = [shipped_model(name) for name in MODELS]
        print(f"vid2vid serve: no --checkpoint, serving the shipped models ({', '.join(MODELS)})", file=sys.stderr)
    else:
        checkpoints = args.checkpoint
    serve(checkpoints, args.host, args.port, limits, device=args.device, precision=args.precision,
          compile_model=args.compile)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vid2vid", description="Video-to-video synthesis.")
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

    prep = sub.add_parser("prepare", help="turn videos or frame folders into a dataset folder")
    prep.add_argument("inputs", nargs="+", metavar="INPUT", help="video files or folders of frames, one sequence each")
    prep.add_argument("output", metavar="OUT", help="dataset folder to write (see docs/data.md)")
    prep.add_argument("--task", required=True, choices=["pose", "face", "street"],
                      help="pose: OpenPose JSON; face: dlib-68 JSON; street: frames and flow only")
    prep.add_argument("--no-labels", action="store_true", help="write frames and flow, not keypoints")
    prep.add_argument("--no-flow", action="store_true", help="do not compute teacher optical flow")
    prep.add_argument("--every", type=positive_int, default=1, help="keep every N-th frame")
    prep.add_argument("--max-frames", type=positive_int, help="stop after this many frames per input")
    prep.add_argument("--label-colours", action="store_true",
                      help="street: the inputs are colour-coded label videos (Cityscapes colours) -> seg_maps")
    prep.add_argument("--multi-person", action="store_true", help="find several people per frame (street shots)")
    prep.add_argument("--landmarks", choices=["mediapipe", "dlib"], default="mediapipe",
                      help="face: MediaPipe's FaceMesh mapped to dlib-68 (default), or dlib's own 68-point predictor "
                           "(what imaginaire's face data was made with; pip install 'vid2vid[dlib]')")
    prep.add_argument("--overwrite", action="store_true", help="replace a dataset this command wrote before")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.add_argument("--detector-models", metavar="DIR", help="the Tasks API's model files (MediaPipe 0.10.35+; "
                         "default $VID2VID_DETECTOR_MODELS, else ~/.cache/vid2vid/detector-models)")
    prep.set_defaults(run=cmd_prepare)

    tr = sub.add_parser("train", help="train a generator (vid2vid or few-shot vid2vid)")
    tr.add_argument("--config", help="training config: a YAML file or a recipe name (train_dancers_cpu, ...)")
    tr.add_argument("--data", help="dataset folder (replaces the config's data_root)")
    tr.add_argument("--run-dir", help="where checkpoints and logs go (default runs/CONFIG_NAME)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    tr.add_argument("--overwrite", action="store_true", help="start again in a run folder that holds a run")
    tr.add_argument("--no-perceptual", action="store_true",
                    help="train without the VGG19 perceptual loss (needed where no VGG19 weights are at hand)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(run=cmd_train)

    gen = sub.add_parser("generate", help="render a video from driving labels (and reference images)")
    gen.add_argument("--checkpoint", required=True, help="a checkpoint folder (ours, or converted from imaginaire)")
    gen.add_argument("--driving", required=True, help="a prepared dataset folder, or a video / frame folder")
    gen.add_argument("--reference", nargs="+", metavar="IMG", help="few-shot: K images of the person or scene")
    gen.add_argument("-o", "--output", required=True, help="the .mp4 to write (H.264)")
    gen.add_argument("--sequence", help="which sequence of a prepared folder (default: the first)")
    gen.add_argument("--size", type=parse_size, help="output HxW (default: the size the model was trained at)")
    gen.add_argument("--frames-dir", help="also write each frame as PNG into this folder")
    gen.add_argument("--side-by-side", action="store_true", help="driving labels | result | reference in the video")
    gen.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    gen.add_argument("--fps", type=number_in(0, 1000),
                     help="frames per second of the video (default: the source's, or 25)")
    gen.add_argument("--device", default="auto", help="auto, cpu or cuda")
    gen.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                     help="auto: bf16 autocast on CUDA for few-shot models, else fp32; bf16 on a CPU with bf16 "
                          "instructions is about 2x faster, a little less exact")
    gen.add_argument("--compile", action="store_true",
                     help="torch.compile the frame step: minutes to build, then faster (for long videos)")
    gen.add_argument("--finetune", type=finetune_count, default=0, metavar="N",
                     help="few-shot: first fine-tune a copy of the model on the references for N steps "
                          "(imaginaire's dancing inference takes 100); 0: off")
    gen.add_argument("--finetune-lr", type=learning_rate, metavar="LR",
                     help="generator learning rate for --finetune (default 1e-5; imaginaire tunes at 1e-4)")
    gen.add_argument("--finetune-adversarial", action="store_true",
                     help="fine-tune with the checkpoint's discriminators, as imaginaire (default: L1 in their place)")
    gen.add_argument("--finetune-augment", choices=["roll", "photo"], default="roll",
                     help="--finetune's augmentation of its targets: roll (imaginaire's shift and flip) or photo "
                          "(also a zoom, and one colour change of target and references alike)")
    gen.add_argument("--reference-backdrop", choices=["photo", "plain"], default="plain",
                     help="pose, a loose reference photo: its person on a plain wall of its backdrop's colour, as "
                          "the built-in dancers stand (default; MediaPipe's person segmentation), or the photo as is")
    gen.add_argument("--face-proportions", choices=["reference", "relative", "driving"], default="reference",
                     help="few-shot face: the driving landmarks given the reference face's proportions, as "
                          "imaginaire's face test does (default), the reference's own landmarks moved as the "
                          "driver's move from the first frame (relative), or the driver's own")
    gen.add_argument("--reference-warp", choices=["landmarks", "network"],
                     help="warp the reference (few-shot) or the previous output (vid2vid face) onto the driving "
                          "frame by the landmarks (face) or body keypoints (few-shot pose), a thin-plate spline on "
                          "the face or body with the flow network around it, or by the flow network alone; "
                          "default: landmarks for few-shot face models, else network")
    feedback = gen.add_mutually_exclusive_group()
    feedback.add_argument("--no-feedback", dest="feedback", action="store_false", default=None,
                          help="few-shot: make every frame from the references alone, not from the previous output "
                               "(keeps a real photo's face from blurring over a long video; less smoothing); the "
                               "default for few-shot face models")
    feedback.add_argument("--feedback", dest="feedback", action="store_true",
                          help="feed each output back as the previous frame, as training does (the default but for "
                               "few-shot face models)")
    gen.add_argument("--seed", type=seed_int, default=0, help="random seed of --finetune")
    gen.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.add_argument("--detector-models", metavar="DIR", help="the Tasks API's model files (MediaPipe 0.10.35+; "
                         "default $VID2VID_DETECTOR_MODELS, else ~/.cache/vid2vid/detector-models)")
    gen.set_defaults(run=cmd_generate)

    live = sub.add_parser("live", help="render a camera (or a video standing in for one) live, dropping frames "
                          "the model is too slow for; prints frames/s and latency")
    live.add_argument("source", help="a camera index (0 is the first camera) or a video file")
    live.add_argument("--checkpoint", help="a pose or face checkpoint (default: the shipped dancer model)")
    live.add_argument("--reference", nargs="+", metavar="IMG", help="few-shot: images of the person to render")
    live.add_argument("-o", "--output", help="an .mp4 of what was shown, one frame per camera frame")
    live.add_argument("--side-by-side", action="store_true", help="camera | driving labels | result in the video")
    live.add_argument("--max-frames", type=positive_int, help="stop after this many camera frames")
    live.add_argument("--seconds", type=positive_float, help="stop after this long")
    live.add_argument("--every-frame", action="store_true",
                      help="a video file: take every frame as fast as they render, instead of at its frame rate")
    live.add_argument("--finetune", type=finetune_count, default=0, metavar="N",
                      help="few-shot: fine-tune a copy of the model on the references for N steps first")
    live.add_argument("--reference-backdrop", choices=["photo", "plain"], default="plain",
                      help="pose: a reference photo's person on a plain wall (default), or the photo as is")
    live.add_argument("--device", default="auto", help="auto, cpu or cuda")
    live.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                      help="auto: bf16 autocast on CUDA, else fp32; bf16 on a CPU with bf16 instructions")
    live.add_argument("--overwrite", action="store_true", help="replace an existing output")
    live.add_argument("--detector-models", metavar="DIR", help="the Tasks API's model files (MediaPipe 0.10.35+)")
    live.set_defaults(run=cmd_live)

    ev = sub.add_parser("evaluate", help="score a checkpoint on held-out sequences against their ground truth")
    ev.add_argument("--checkpoint", required=True, help="a checkpoint folder")
    ev.add_argument("--data", required=True, help="a prepared dataset folder of held-out sequences")
    ev.add_argument("--K", type=positive_int, nargs="+",
                    help="few-shot: numbers of reference images to try (default 1)")
    ev.add_argument("--references", help="few-shot: dataset folder whose sequence of the same name gives the "
                                        "references (default: the evaluated sequence itself)")
    ev.add_argument("-o", "--output", required=True, help="report folder: metrics.json, report.html, PNGs")
    ev.add_argument("--sequence", nargs="+", help="only these sequences")
    ev.add_argument("--max-frames", type=positive_int, help="score at most this many frames per sequence")
    ev.add_argument("--size", type=parse_size, help="HxW (default: the size the model was trained at)")
    ev.add_argument("--inception", help="FID: pytorch-fid's Inception weights (pt_inception-2015-12-05-*.pth)")
    ev.add_argument("--i3d", help="FVD: a TorchScript I3D (i3d_torchscript.pt of the common FVD tools)")
    ev.add_argument("--no-pose-error", action="store_true", help="skip keypoint detection on the results")
    ev.add_argument("--finetune", type=finetune_count, nargs="+", metavar="N",
                    help="few-shot: fine-tune on each sequence's references for N steps first; several values "
                         "(0 100) score each in one report")
    ev.add_argument("--finetune-lr", type=learning_rate, metavar="LR", help="generator learning rate of --finetune")
    ev.add_argument("--finetune-adversarial", action="store_true",
                    help="fine-tune with the checkpoint's discriminators, as imaginaire (default: L1 in their place)")
    ev.add_argument("--seed", type=seed_int, default=0, help="random seed of --finetune")
    ev.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--detector-models", metavar="DIR", help="the Tasks API's model files (MediaPipe 0.10.35+; "
                         "default $VID2VID_DETECTOR_MODELS, else ~/.cache/vid2vid/detector-models)")
    ev.set_defaults(run=cmd_evaluate)

    exp = sub.add_parser("export", help="write the generator's frame step as ONNX graphs (one per history length)")
    exp.add_argument("--checkpoint", required=True, help="a checkpoint folder")
    exp.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (the only format for now)")
    exp.add_argument("-o", "--output", required=True, help="folder for step_prev*.onnx and export.json")
    exp.add_argument("--size", type=parse_size, help="HxW the graphs are made for (default: the training size)")
    exp.add_argument("--K", type=positive_int, default=1, help="few-shot: number of reference images")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    exp.set_defaults(run=cmd_export)

    web = sub.add_parser("serve", help="a local web page: pick references and a driving video, watch the result")
    web.add_argument("--checkpoint", action="append",
                     help="a checkpoint folder; repeat it to offer several models, the first the page's default "
                          "(default: the shipped models, dancers_cpu and faces_cpu)")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    web.add_argument("--port", type=whole_number(1, 65535), default=8000, help="port to listen on")
    web.add_argument("--max-upload-mb", type=positive_float, default=200, help="largest upload, all files together")
    web.add_argument("--max-frames", type=positive_int, default=300, help="most frames rendered per job")
    web.add_argument("--max-resolution", type=positive_int, default=1024, help="longest side of an output video")
    web.add_argument("--max-input-resolution", type=positive_int, default=4096,
                     help="longest side of an uploaded image or video")
    web.add_argument("--max-references", type=positive_int, default=8, help="most reference images per job")
    web.add_argument("--max-queue", type=positive_int, default=8, help="most jobs waiting behind the running one")
    web.add_argument("--max-finetune-steps", type=non_negative_int, default=300,
                     help="most fine-tuning steps a job may ask for (0: no fine-tuning offered)")
    web.add_argument("--max-live", type=non_negative_int, default=2,
                     help="live sessions (tabs with the camera on) at once; the next is told the server is busy")
    web.add_argument("--max-live-frame-kb", type=whole_number(1, 10**6), default=2048,
                     help="largest camera frame a live page may send")
    web.add_argument("--device", default="auto", help="auto, cpu or cuda")
    web.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                     help="auto: bf16 autocast on CUDA for few-shot models, else fp32")
    web.add_argument("--compile", action="store_true",
                     help="run the frame step through torch.compile: the first job at each size waits for it")
    web.add_argument("--detector-models", metavar="DIR", help="the Tasks API's model files (MediaPipe 0.10.35+; "
                         "default $VID2VID_DETECTOR_MODELS, else ~/.cache/vid2vid/detector-models)")
    web.set_defaults(run=cmd_serve)

    models = sub.add_parser("detector-models", help="the model files of MediaPipe's Tasks API (Python 3.13+): "
                            "where they are looked for, and --fetch to download them once")
    models.add_argument("--fetch", action="store_true", help="download the missing files (needs internet)")
    models.add_argument("--dir", help="the folder (default: $VID2VID_DETECTOR_MODELS, else "
                                      "~/.cache/vid2vid/detector-models)")
    models.add_argument("--from", dest="source", metavar="URL", help="a mirror holding the files by name")
    models.set_defaults(run=cmd_detector_models)

    synth = sub.add_parser("synth", help="write a built-in procedural dataset with exact ground truth")
    synth.add_argument("kind", choices=["dancers", "street", "faces", "turning", "photo", "face_photo",
                                                  "face_talk"])
    synth.add_argument("output", metavar="OUT", help="dataset folder to write")
    synth.add_argument("--sequences", type=positive_int, default=8, help="number of sequences (each its own identity)")
    synth.add_argument("--frames", type=positive_int, default=32, help="frames per sequence")
    synth.add_argument("--size", type=parse_size, default=(256, 256), help="HxW (default 256x256)")
    synth.add_argument("--seed", type=seed_int, default=0)
    synth.add_argument("--first-index", type=whole_number(0, 10**6), default=0,
                       help="index of the first sequence: use different ranges for training and held-out data")
    synth.add_argument("--motion-offset", type=whole_number(-10**6, 10**6), default=0,
                       help="sequence i shows identity i doing the motion of sequence i + N (held-out pairs)")
    synth.add_argument("--overwrite", action="store_true", help="replace a dataset this command wrote before")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(run=cmd_synth)
    return parser


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = one_line_warning  # a user reads what to do, not which line of ours warned
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad argument (already reported in one line)
        return exc.code if isinstance(exc.code, int) else 2
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "detector_models", None):
        os.environ[MODELS_ENV] = args.detector_models  # read wherever a detector starts, in this process
    try:
        args.run(args)
    except ImportError as exc:
        if "cv2" not in str(exc) and "libGL" not in str(exc):
            raise
        print(f"error: OpenCV (cv2) cannot load ({one_line(exc)}): {OPENCV_FIX}", file=sys.stderr)
        return 2
    except (UserError, ValueError, OSError, MissingExtra) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours, not the user's input: still one line, the traceback on request
        if out_of_memory(exc):  # not a bug: the machine is too small for what was asked
            print(f"error: out of memory ({shown_message(exc)}): {OUT_OF_MEMORY_FIX}", file=sys.stderr)
            return 2
        return _unexpected(exc, args.debug)
    return 0


OUT_OF_MEMORY_FIX = "a smaller --size, fewer frames or references, or --device cpu for a GPU too small, need less"


# How torch's CPU allocator and OpenCV say it (a RuntimeError and a cv2.error, no MemoryError).
OUT_OF_MEMORY_MESSAGES = ("can't allocate memory", "(-4:Insufficient memory)")


def out_of_memory(exc: BaseException) -> bool:
    import torch

    return (isinstance(exc, MemoryError | torch.OutOfMemoryError)
            or any(text in str(exc) for text in OUT_OF_MEMORY_MESSAGES))


def shown_message(exc: BaseException, most: int = 160) -> str:
    text = one_line(exc) or type(exc).__name__
    return text if len(text) <= most else text[:most - 1] + "…"


def _unexpected(exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    print(f"error: unexpected {type(exc).__name__}: {one_line(exc)} (run with --debug for the traceback, "
          "and please report it)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
