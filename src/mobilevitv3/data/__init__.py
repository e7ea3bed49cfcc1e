"""Data sets, transforms and samplers. Classification: `classification.image_folder` and the embedded
`classification.digits`; segmentation/detection: the published layouts (`voc`, `ade20k`, `coco`) and the embedded
digit scenes (`scenes`); every image file is read by `images.read_rgb` (one rule: EXIF, 16-bit, alpha); batch
samplers in `sampler`; transforms in `transforms`."""
