"""Data sets, transforms and samplers. Classification: `classification.image_folder` and the embedded
`classification.digits`; batch samplers in `sampler`; transforms in `transforms`."""
