"""``palm-predict``: predict pathologic myopia for fundus photographs, from a checkpoint or an exported model.

Examples (from the repository root; ``palm-predict`` once installed)::

    python tools/predict.py --weights runs/resnet50/best_model.pdparams ../shared/palm/PALM-Validation400/V0008.jpg
    python tools/predict.py --arch squeezenet1_1 --weights sq.pdparams photos/ --csv predictions.csv
    python tools/predict.py --inference-model exported/resnet50 photos/ --grid grid.png \\
        --labels ../shared/palm/PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx
    python tools/predict.py --inference-model exported/resnet50 --backend onnx photos/   # model.onnx, onnxruntime

Each image gets ``pm_probability``, ``label`` (1 = PM when pm_probability >=
threshold) and ``class_name`` written ``"<Chinese> (<English>)"``:
``病理性近视 (pathologic myopia)`` or ``非病理性近视 (non-pathologic myopia)``
(the SqueezeNet programs' names), plus the confidence of the predicted class.  ``--csv`` writes the
rows ``file,pm_probability,label,class_name`` (UTF-8).  ``--grid`` draws the
images titled with the prediction, green when it matches the true label and red
when not; true labels come from ``--labels`` or from PALM training file names
(``H``/``N`` = 0, ``P`` = 1).

Inputs: a folder contributes the image files directly inside it (``.jpg``,
``.jpeg``, ``.png``, ``.bmp``; other files are ignored).  Every image must be a
readable JPEG, PNG or BMP; otherwise the tool stops with one line naming the
file and writes nothing, unless ``--skip-bad-images`` is given (then each such
file is skipped with a warning naming it).
"""

import argparse
import os
import sys

from paddle_palm import cli


def build_parser():
    """The argument parser of ``palm-predict`` / ``tools/predict.py``."""
    parser = cli.ArgumentParser(
        formatter_class=argparse.HelpFormatter,  # each help text states its own default
        description="Predict pathologic myopia (PM) for fundus photographs: one row per image with "
        "file, pm_probability, label and class name.",
        epilog="With --weights, settings not given are read from config.yaml beside the weights "
        "(else the architecture's default recipe); with --inference-model, from its preprocess.json.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders of images")
    cli.add_model_options(parser, source="either", title="model (give --weights or --inference-model)")
    cli.add_screening_options(parser.add_argument_group("screening"))
    runtime = parser.add_argument_group("runtime")
    cli.add_runtime_options(runtime, threads_help="CPU math threads of Paddle Inference (with --inference-model)")
    engine = parser.add_argument_group("inference engine (with --inference-model)")
    engine.add_argument("--backend", choices=("paddle", "onnx"), default="paddle",
                        help="paddle (default): Paddle Inference; onnx: the folder's model.onnx through onnxruntime "
                        "(also chosen when --inference-model names a .onnx file; pip install \"paddle_palm[onnx]\")")
    engine.add_argument("--no-onednn", action="store_true", help="plain CPU kernels instead of oneDNN")
    engine.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="fp32 (default): the checkpoint's numbers; bf16: oneDNN bfloat16 where the CPU has it "
                        "(faster; probabilities within about 1e-2)")
    out = parser.add_argument_group("output")
    out.add_argument("--csv", metavar="FILE", help="write file,pm_probability,label,class_name rows here")
    out.add_argument("--grid", metavar="FILE", help="draw a PNG grid of the images with predicted and true labels")
    out.add_argument("--grid-max", type=cli.grid_count, default=20, metavar="N",
                     help="at most this many images (the first ones) in the grid (default: %(default)s)")
    out.add_argument("--labels", metavar="FILE", help="label sheet (csv/xlsx: imgName, Label) giving true labels")
    out.add_argument("--skip-bad-images", action="store_true",
                     help="skip unreadable images with a warning instead of stopping")
    cli.add_loading_options(out, batch_size_default=16, workers=False)
    out.add_argument("--quiet", action="store_true", help="no table on standard output")
    return parser


def _predictor(parser, args):
    """The predictor the options ask for: a checkpoint, a Paddle Inference export or its ONNX model."""
    from paddle_palm.engine import predictors
    from paddle_palm.engine.device import select_device

    device = select_device(args.device)
    onnx = args.inference_model and (args.backend == "onnx" or predictors.onnx_model_folder(args.inference_model))
    if onnx:
        if args.no_onednn or args.precision != "fp32" or str(args.device).startswith("gpu"):
            parser.error("--no-onednn, --precision bf16 and a GPU --device are Paddle Inference settings; "
                         "onnxruntime runs the ONNX model on CPU in fp32")
        return predictors.OnnxPredictor(args.inference_model, threads=args.threads, threshold=args.threshold,
                                        tta=args.tta)
    if args.inference_model:
        return predictors.ExportedPredictor(args.inference_model, threads=args.threads, onednn=not args.no_onednn,
                                            precision=args.precision, threshold=args.threshold, device=device,
                                            tta=args.tta)
    return predictors.CheckpointPredictor(args.weights, arch=args.arch, num_classes=args.num_classes,
                                          image_size=args.image_size, preprocess=args.preprocess,
                                          threshold=args.threshold, tta=args.tta)


def _summary(args, predictor, records):
    """The last line: how many images, how many PM (and referred), the model, the time, the accuracy."""
    from paddle_palm.engine import predict

    n_pm = sum(r["label"] for r in records)
    per_image = 1000.0 * sum(r["seconds"] for r in records) / len(records)
    referred = sum(r.get("decision") == "refer" for r in records)
    refer_text = f", {referred} referred to a specialist (band {args.refer_band:g})" if args.refer_band else ""
    summary = (f"{len(records)} images, {n_pm} predicted PM{refer_text} (threshold {predictor.threshold:g}"
               f"{', flip TTA' if args.tta else ''}); "
               f"{predictor.description}; model time {per_image:.1f} ms per image")
    n_known, acc = predict.accuracy_of_known(records)
    if n_known:
        summary += f"; accuracy {acc:.4f} on the {n_known} images with a known label"
    return summary


def _write_grid(args, predictor, records):
    from paddle_palm.viz.plots import plot_prediction_grid

    shown = [r for r in records if "image" in r][: args.grid_max]
    classes = predictor.classes_zh or predictor.classes
    return plot_prediction_grid(
        [r["image"] for r in shown], [r["true_label"] for r in shown], [r["label"] for r in shown],
        [r["confidence"] for r in shown], args.grid, class_names=classes,
        titles=[os.path.basename(r["file"]) for r in shown],
    )


def main(argv=None):
    """Parse the arguments, predict, print the table and write the CSV / grid."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.inference_model and (args.arch or args.num_classes or args.image_size or args.preprocess):
        parser.error("--arch, --num-classes, --image-size and --preprocess go with --weights; "
                     "an exported model records its own")

    from paddle_palm.engine import predict, reports

    predictor = _predictor(parser, args)

    def warn(message):
        print(f"warning: {message}", file=sys.stderr)

    records = predict.predict_images(predictor, args.paths, batch_size=args.batch_size, labels_file=args.labels,
                                     keep_images=args.grid_max if args.grid else 0,
                                     skip_bad=args.skip_bad_images, warn=warn, refer_band=args.refer_band)
    if not args.quiet:
        print(reports.format_predictions_table(records))
    print(_summary(args, predictor, records))
    if len(records) == 1:
        r = records[0]  # the SqueezeNet programs' sentence for a single image
        print(f"预测结果为：{r['class_name']}，置信度为：{r['confidence']:.4f}")
    if args.csv:
        print(f"wrote {reports.write_predictions_csv(records, args.csv)}")
    if args.grid:
        print(f"wrote {_write_grid(args, predictor, records)}")
    return 0


def entry():
    """The ``palm-predict`` console script (also ``python tools/predict.py``)."""
    cli.start(main, cli.QUIET_PADDLE)


if __name__ == "__main__":
    entry()
