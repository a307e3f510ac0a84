"""Coverage-guided fuzzing (atheris/libFuzzer) of the decoders that read untrusted bytes.

    python -m fuzz.wav_decoder -runs=100000 fuzz/corpus/wav        # audio: WAV header + soundfile
    python -m fuzz.image_decoder -runs=100000 fuzz/corpus/image    # segmentation: PNG/JPEG + raw pixels
    python -m fuzz.splitcompute_payload fuzz/corpus/splitcompute   # splitcompute: wire frame + range decoder

A harness passes when every input either decodes or raises the service's own InvalidArgument /
FailedPrecondition; any other exception, a hang (-timeout) or a memory blow-up (-rss_limit_mb) is a
crash that libFuzzer saves as an artifact. The seed corpus (fuzz/corpus/, made by
`python -m fuzz.make_seeds`) is kept in the repo; tests/reliability/test_reliability_fuzz.py runs
each harness for a bounded number of runs on a COPY of it, so CI never rewrites the repo.
"""
