import Testing
@testable import LoadGenerator

@Suite struct OpenLoopScheduleTests {
    @Test func oneThreadSendsEveryOneOverRate() {
        let schedule = OpenLoopSchedule(totalRate: 1000, threadCount: 1, threadIndex: 0, connectionsPerThread: 4, start: 5_000)
        #expect(schedule.slotInterval == 1_000_000)
        #expect(schedule.time(ofSlot: 0) == 5_000)
        #expect(schedule.time(ofSlot: 3) == 3_005_000)
        #expect((0..<6).map { schedule.connection(ofSlot: $0) } == [0, 1, 2, 3, 0, 1])
        // Each connection sends every 4 ms: 250 req/s each, 1000 in all.
        #expect(schedule.connectionInterval == 4_000_000)
    }

    @Test func threadsSplitTheRateAndInterleave() {
        let rate = 30_000.0
        let threads = 3
        let schedules = (0..<threads).map {
            OpenLoopSchedule(totalRate: rate, threadCount: threads, threadIndex: $0, connectionsPerThread: 50, start: 0)
        }
        var times: [UInt64] = []
        for schedule in schedules { for slot in 0..<100 { times.append(schedule.time(ofSlot: UInt64(slot))) } }
        times.sort()
        // Merged, the process sends every 1/30000 s = 33,333 ns (± rounding).
        for (earlier, later) in zip(times, times.dropFirst()) {
            #expect((33_332...33_335).contains(later - earlier))
        }
    }

    @Test func slotTimesDoNotDriftOverLongRuns() {
        let schedule = OpenLoopSchedule(totalRate: 3, threadCount: 1, threadIndex: 0, connectionsPerThread: 1, start: 0)
        // 1/3 s does not divide evenly; slot 3,000,000 is still exactly 1,000,000 s later.
        #expect(schedule.time(ofSlot: 3_000_000) == 1_000_000_000_000_000)
    }

    @Test func slotsDueAgreesWithSlotTimes() {
        let schedule = OpenLoopSchedule(totalRate: 7_777, threadCount: 2, threadIndex: 1, connectionsPerThread: 3, start: 1_000)
        #expect(schedule.slotsDue(at: 0) == 0)
        #expect(schedule.slotsDue(at: schedule.time(ofSlot: 0) - 1) == 0)
        for slot: UInt64 in [0, 1, 2, 99, 12_345] {
            let time = schedule.time(ofSlot: slot)
            #expect(schedule.slotsDue(at: time) == slot + 1)
            #expect(schedule.slotsDue(at: time - 1) == slot)
        }
    }
}
