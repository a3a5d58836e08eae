package session

import "testing"

// BenchmarkLoad measures the per-request hot path: decode the session cookie
// and load the session (memory store).
func BenchmarkLoad(b *testing.B) {
	m := newManager(b, testConfig(b), NewMemoryStore(nil, 0), nil)
	ctx := b.Context()
	tk, err := m.Create(ctx, testSession())
	if err != nil {
		b.Fatal(err)
	}
	cookie, err := m.EncodeTicket(tk)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		tk, err := m.DecodeTicket(cookie)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := m.Load(ctx, tk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeTicket isolates the cookie half of BenchmarkLoad.
func BenchmarkDecodeTicket(b *testing.B) {
	m := newManager(b, testConfig(b), NewMemoryStore(nil, 0), nil)
	tk, _ := NewTicket()
	cookie, _ := m.EncodeTicket(tk)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.DecodeTicket(cookie); err != nil {
			b.Fatal(err)
		}
	}
}
