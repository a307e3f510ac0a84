"""Audio embeddings: PaSST (Koutini et al., HEAR 2021) and a bag-of-words embedder after Verma,
trained on synthetic 32 kHz audio with known labels and event onsets."""
