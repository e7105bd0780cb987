"""Training: the loop shared by pretraining and fine-tuning (loop: deterministic batches, checkpoints, resume,
mixed context windows), run by plain torch or by DeepSpeed (deepspeed_backend, deepspeed_config).

May import: longrope.rope, model, patching, data, parallelism.
"""
