"""Run a tiny training job; launched by test_distributed.py alone and under `accelerate launch` (2 processes)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from helpers import small_split, tiny_run_config

from budgetune.models import load_tokenizer
from budgetune.train.loop import train

out, config_path = sys.argv[1], sys.argv[2]
world = int(os.environ.get("WORLD_SIZE", "1"))
tokenizer = load_tokenizer("smollm2-135m")
cfg = tiny_run_config(config_path, out, max_steps=3, micro_batch_size=4 // world, method="lora")
result = train(cfg, tokenizer=tokenizer, data=small_split(tokenizer, 24, 8), progress=False)
if int(os.environ.get("RANK", "0")) == 0:
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump({"world": world, "ledger": result.ledger.to_dict(), "after": result.after_loss}, f)
