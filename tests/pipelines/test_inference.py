import numpy as np

from mrl_keras.pipelines.inference import MatryoshkaEmbedHandler


def test_handler_embeds_a_batch_like_local_model(fm_model, fm_images):
    base, backend = fm_model
    images, _ = fm_images
    handler = MatryoshkaEmbedHandler(base, 1, 32, min_batch_size=4, max_batch_size=16)
    model = handler.load_model()
    batch = list(images[:10])
    results = list(handler.run_inference(batch, model))
    assert len(results) == 10 and results[3].example is batch[3]
    np.testing.assert_allclose(
        np.stack([r.inference for r in results]), backend.embed(images[:10], 32).embeddings, atol=1e-6
    )
    assert handler.batch_elements_kwargs() == {"min_batch_size": 4, "max_batch_size": 16}
    assert handler.share_model_across_processes() is False
    assert MatryoshkaEmbedHandler(base, 1, 32, share_model=True).share_model_across_processes()
    assert handler.get_num_bytes(batch) == 10 * 28 * 28 * 4
