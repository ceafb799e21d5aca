"""Adaptive retrieval: the versioned index directory (ScaNN over `z[:D_s]` plus a rerank store
of `z[:D_r]`), the retriever and its funnel, and the readers of corpora.

`store_codecs.py` (bfloat16 bits), `scann_builder.py` (ScaNN options and builder),
`files.py` (embedding and id files), `store_writer.py` (the chunked rerank store),
`index.py` (`build_index`, the manifest, `AdaptiveIndex`), `rerank.py`, `funnel.py`,
`retriever.py` (`AdaptiveRetriever`) and `corpus.py`. Importing these needs NumPy only;
ScaNN (and with it TensorFlow) is imported when an index is built or loaded.
"""
