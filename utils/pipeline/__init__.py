"""The end-to-end audit: train → preprocess → reveal → annotate → retrieve → localize → mitigate →
evaluate → report, each step cached by a hash of what it depends on."""
