"""One experiment: the run context and its stages (stack, budgets, sampler, CPU meter, nemesis, load, drain)
and the run folder they write."""
