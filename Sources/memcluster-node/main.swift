import CacheNode
import Glibc

// Everything lives in CacheNode: closures handed to C must not be written in a
// main.swift, where they would be main-actor isolated.
exit(NodeMain.run(arguments: CommandLine.arguments))
