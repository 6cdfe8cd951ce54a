"""Runs a script under FSDP2 on CPU processes (gloo), for the tests. accelerate turns FSDP off when it runs on the
CPU, though torch's `fully_shard` works there; so the accelerate state is switched to FSDP after accelerate has set
up the processes. Usage: `accelerate launch --config_file configs/accelerate/fsdp.yaml fsdp_on_cpu.py SCRIPT ARGS`
with ACCELERATE_USE_CPU=1."""

import runpy
import sys

from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

set_up = AcceleratorState.__init__
plugin = None


def set_up_with_fsdp(self, *args, **kwargs) -> None:
    global plugin
    set_up(self, *args, **kwargs)
    if self.distributed_type == DistributedType.MULTI_CPU:  # set again whenever the state is: one plugin throughout
        plugin = plugin or FullyShardedDataParallelPlugin()  # from the FSDP_* variables the launcher set
        self.distributed_type, self.fsdp_plugin = DistributedType.FSDP, plugin


AcceleratorState.__init__ = set_up_with_fsdp
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
