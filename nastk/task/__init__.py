"""The task contract: what a task provides (data, head, loss, metrics) and how losses combine."""

from nastk.task.contract import Meter, Task

__all__ = ["Meter", "Task"]
