"""On-device data functions: temporal normalisation, motion, augmentation."""
