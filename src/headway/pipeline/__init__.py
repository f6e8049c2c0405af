"""CI pipelines: the stages `headway ci run` goes through (which of the app's own lint and
test commands to run, detected or from [ci]) and the provider files `headway generate ci`
writes, whose steps only call `headway ci run STAGE`. Never prints, never runs the stages
itself (the CLI does, through the commands Headway already has), never writes a secret's
value into a file: the generated files name the provider's secret store."""
