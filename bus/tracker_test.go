package bus

import "testing"

// TestOffsetTrackerCommitsInOrder checks that with concurrent handlers an
// offset is released for commit only when every earlier message of its
// partition is done, and partitions do not wait for each other.
func TestOffsetTrackerCommitsInOrder(t *testing.T) {
	tr := newOffsetTracker()
	a0 := tr.add(Message{Partition: 0, Offset: 10})
	a1 := tr.add(Message{Partition: 0, Offset: 11})
	b0 := tr.add(Message{Partition: 1, Offset: 5})
	a2 := tr.add(Message{Partition: 0, Offset: 12})

	if _, ok := tr.done(a1); ok {
		t.Fatal("offset 11 released before 10 was done")
	}
	if m, ok := tr.done(b0); !ok || m.Offset != 5 {
		t.Fatalf("partition 1 = %v %v, want offset 5", m.Offset, ok)
	}
	if m, ok := tr.done(a0); !ok || m.Offset != 11 {
		t.Fatalf("after 10 and 11 done: %v %v, want 11", m.Offset, ok)
	}
	if m, ok := tr.done(a2); !ok || m.Offset != 12 {
		t.Fatalf("after 12 done: %v %v, want 12", m.Offset, ok)
	}
}
