"""The `phonebatch` command, one module per group of commands (`submit`, `inspection`,
`control`, `serve`, `schedules`, `run`), their shared pieces (`shared`, `outcome`,
`progress`) and the local processes the demo and tests start (`demo`, `services`).

May import every other package of `jobs`. `run` (`phonebatch worker`, `phonebatch beat`)
is the only module of `jobs` that imports `worker`.
"""
