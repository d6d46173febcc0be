"""Run directories: chunk specs and results, manifest, checksums, resume and retry."""
