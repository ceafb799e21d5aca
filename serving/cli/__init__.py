"""The serving commands, one module per command: `index_build.py` (`mrl index build`),
`serve.py` (`mrl serve`), `search.py` (`mrl search`), `classify.py` (`mrl classify`),
`embed_client.py` (`mrl embed` in client mode: `--service URL` or a model with `--inputs FILE`;
pipelines/cli.py owns `mrl embed` and hands it over) and `model_server.py` (`mrl model-server`);
`common.py` holds the flags and helpers they share.
Each entry point is `main(argv) -> int`.
"""
