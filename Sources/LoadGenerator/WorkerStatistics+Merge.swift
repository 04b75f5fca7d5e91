extension WorkerStatistics {
    /// Adds another worker's counters (not its histograms).
    func add(_ other: WorkerStatistics) {
        gets += other.gets
        getKeys += other.getKeys
        hits += other.hits
        misses += other.misses
        sets += other.sets
        notStored += other.notStored
        serverErrors += other.serverErrors
        protocolErrors += other.protocolErrors
        connectionErrors += other.connectionErrors
        timeouts += other.timeouts
        verifyFailures += other.verifyFailures
        firstVerifyFailure = firstVerifyFailure ?? other.firstVerifyFailure
        firstServerError = firstServerError ?? other.firstServerError
        unfinished += other.unfinished
        bytesSent += other.bytesSent
        bytesReceived += other.bytesReceived
        scheduled += other.scheduled
        late += other.late
        waitedForPipeline += other.waitedForPipeline
        unsent += other.unsent
        fillStored += other.fillStored
        fillFailed += other.fillFailed
    }
}
