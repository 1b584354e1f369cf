"""One experiment (`harness run`): the run context and its stages, and the run folder they write.

experiment.py  the skeleton: validate → run folder → stack up → stages → stack down → analysis
context.py     RunContext (threaded through every stage) and Clock
stages.py      Stage (start/busy/progress/stop) and the real stages: budgets, sampler, drain, cpu, nemesis, load
progress.py    the live table (a terminal) or a plain line every few seconds (a log, CI)
runfolder.py   the run folder's files and columns (the contract between stages and the analyzer), MetaWriter
budgets.py, sampler.py, cpu.py   what the budgets, sampler and CPU-meter stages do
"""
