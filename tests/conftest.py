"""The test process runs with the command line's process settings for memory
(:func:`~centerpoint_deploy.memory.keep_freed_memory`): results are the same either way, and the
CPU networks' passes are faster without glibc mapping every feature map afresh."""

from centerpoint_deploy.memory import keep_freed_memory

keep_freed_memory()
