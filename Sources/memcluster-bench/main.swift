// Flags -> configuration -> run -> report; everything lives in LoadGenerator.
import LoadGenerator

BenchCommand.main()
