package guard

// HeldLocks returns how many keys have a lock entry.
func HeldLocks(g *Guard) int { return g.locks.held() }
