"""Runs a script under FSDP2 or DeepSpeed on CPU processes (gloo), for the tests. accelerate turns both off on the
CPU, though torch's `fully_shard` and DeepSpeed's CPU accelerator work there; so the accelerate state is switched to
what the launcher's config file asks for after accelerate has set up the processes. Usage, with ACCELERATE_USE_CPU=1:
`accelerate launch --config_file configs/accelerate/{fsdp,deepspeed}.yaml sharded_on_cpu.py SCRIPT ARGS`."""

import os
import runpy
import sys

from accelerate.state import AcceleratorState
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin

set_up = AcceleratorState.__init__
plugin = None


def set_up_sharded(self, *args, **kwargs) -> None:
    global plugin
    set_up(self, *args, **kwargs)
    if self.distributed_type != DistributedType.MULTI_CPU:
        return
    # set again whenever the state is: one plugin throughout, from the variables the launcher set
    if os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true":
        if plugin is None:
            plugin = DeepSpeedPlugin()
            plugin.set_mixed_precision("no")
        plugin.select(_from_accelerator_state=True)
        self.distributed_type, self.deepspeed_plugins = DistributedType.DEEPSPEED, {"default": plugin}
    else:
        plugin = plugin or FullyShardedDataParallelPlugin()
        self.distributed_type, self.fsdp_plugin = DistributedType.FSDP, plugin


AcceleratorState.__init__ = set_up_sharded
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
