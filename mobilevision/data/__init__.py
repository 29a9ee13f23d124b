"""Task-agnostic data pieces: safe image decoding, the defect report, the synthetic shapes generator."""
