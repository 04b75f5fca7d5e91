@testable import CacheNode
import Testing

@Suite struct ServerClockTests {
    let clock: ServerClock = {
        let clock = ServerClock(unixNow: 1_700_000_000)
        clock.set(100)
        return clock
    }()

    @Test func zeroNeverExpires() { #expect(clock.expiry(fromExptime: 0) == 0) }
    @Test func negativeIsAlreadyExpired() { #expect(clock.expiry(fromExptime: -1) == 1) }
    @Test func thirtyDaysIsRelative() { #expect(clock.expiry(fromExptime: 2_592_000) == 100 + 2_592_000) }
    @Test func largerIsAbsolute() {
        #expect(clock.expiry(fromExptime: 1_700_000_050) == 52)
        #expect(clock.expiry(fromExptime: 2_592_001) == 1)
    }
    @Test func tickFollowsTheWallClock() {
        let ticking = ServerClock(unixNow: 1_000)
        ticking.tick(unixNow: 1_010)
        #expect(ticking.now == 12)
        #expect(ticking.unixNow == 1_010)
    }
}
