from gemma4_operator.cli.entry import run

run()
