"""Sleep: consolidating the day's conversations into the model's weights.

    episode.py    tonight's conversations          selfstudy.py  the training set D
    questions.py  the questions it asks            sampling.py   teacher/student generation
    objective.py  the distillation losses          distill.py    the training loop
    gate.py       accept or reject                 job.py        one night, start to finish
    options.py    every knob                       question_rules.py  questions from patterns
"""

from .job import SleepReport, run_sleep
from .options import SleepOptions

__all__ = ["SleepOptions", "SleepReport", "run_sleep"]
