package scoreboard

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// shared maps one memfd twice, as a worker and the arbiter do: the writer
// and the reader see the same memory at two addresses.
func shared(t *testing.T) (writer, reader *Board) {
	t.Helper()
	fd, err := unix.MemfdCreate("scoreboard-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, 4096); err != nil {
		t.Fatal(err)
	}
	var boards [2]*Board
	for i := range boards {
		mem, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Munmap(mem) })
		if boards[i], err = At(mem); err != nil {
			t.Fatal(err)
		}
	}
	if boards[0].l == boards[1].l {
		t.Fatal("the two mappings are at one address")
	}
	return boards[0], boards[1]
}

func TestUninitializedBoardReadsEmpty(t *testing.T) {
	_, r := shared(t)
	if c := r.Read(); c.Valid || c.RequestCount() != 0 {
		t.Fatalf("a zeroed board reads %+v, want an invalid, empty one", c)
	}
}

func TestAtRefusesShortMemory(t *testing.T) {
	if _, err := At(make([]byte, Size-1)); err == nil {
		t.Fatal("At accepted memory shorter than the board")
	}
}

func TestCountsThroughTheOtherMapping(t *testing.T) {
	w, r := shared(t)
	w.Init()
	if c := r.Read(); !c.Valid || c.State != Booting {
		t.Fatalf("after Init: valid %v, state %s; want valid, booting", c.Valid, c.State)
	}
	w.SetState(Idle)
	w.ConnOpened()
	w.ConnOpened()
	w.ConnClosed()
	w.AddRead(100)
	w.AddWritten(250)
	w.AddRead(-1) // ignored
	for _, code := range []int{400, 431, 413, 414, 999} {
		w.ParseError(code)
	}
	cur := w.Begin(12345, "GET", "/slow?x=1")
	c := r.Read()
	if c.State != Busy || c.InFlight != 1 || c.Current != "GET /slow?x=1" || c.CurrentStart != 12345 {
		t.Fatalf("in flight: state %s, in flight %d, current %q at %d; want busy, 1, \"GET /slow?x=1\" at 12345",
			c.State, c.InFlight, c.Current, c.CurrentStart)
	}
	w.Done(cur, 200, 3*time.Millisecond)
	for _, st := range []int{101, 204, 302, 404, 503, 0} {
		cur := w.Begin(1, "POST", "/")
		w.Done(cur, st, 20*time.Second)
	}
	c = r.Read()
	want := Totals{
		Connections:  2,
		Requests:     [5]uint64{1, 2, 1, 1, 2},
		BytesRead:    100,
		BytesWritten: 250,
		DurationSum:  uint64(3*time.Millisecond + 6*20*time.Second),
	}
	want.Buckets[0] = 1            // 3 ms <= 5 ms
	want.Buckets[NumBuckets-1] = 6 // 20 s: +Inf
	// By code: 400, 408, 413, 414, 417, 431, 501, 505, other.
	want.ParseErrors = [NumParseErrors]uint64{1, 0, 1, 1, 0, 1, 0, 0, 1}
	if c.Totals != want {
		t.Fatalf("totals\n got %+v\nwant %+v", c.Totals, want)
	}
	if c.State != Idle || c.InFlight != 0 || c.ConnsOpen != 1 || c.Current != "" || c.CurrentStart != 0 {
		t.Fatalf("after the requests: state %s, in flight %d, open %d, current %q; want idle, 0, 1, none",
			c.State, c.InFlight, c.ConnsOpen, c.Current)
	}
	w.SetState(Draining)
	if s := r.Read().State; s != Draining {
		t.Fatalf("state %s, want draining", s)
	}
}

func TestBucketBounds(t *testing.T) {
	w, r := shared(t)
	w.Init()
	// A duration on a bound falls in that bound's bucket (le).
	for i, b := range Buckets {
		w.Done(w.Begin(1, "GET", "/"), 200, time.Duration(b*1e9))
		if got := r.Read().Buckets[i]; got != 1 {
			t.Fatalf("%gs: bucket %d holds %d, want 1", b, i, got)
		}
	}
}

func TestCurrentIsTruncated(t *testing.T) {
	w, r := shared(t)
	w.Init()
	long := "/" + strings.Repeat("a", 300)
	cur := w.Begin(7, "GET", long)
	c := r.Read()
	if want := ("GET " + long)[:CurrentMax]; c.Current != want {
		t.Fatalf("current %q, want %q", c.Current, want)
	}
	w.Done(cur, 200, 0)
	cur = w.Begin(8, strings.Repeat("M", 200), "/x")
	if got := r.Read().Current; got != strings.Repeat("M", CurrentMax) {
		t.Fatalf("current %q, want the method truncated", got)
	}
	w.Done(cur, 200, 0)
}

// TestOneCurrentAtATime: with two requests in flight, the board shows the
// first until it is done, and is free again after.
func TestOneCurrentAtATime(t *testing.T) {
	w, r := shared(t)
	w.Init()
	a := w.Begin(1, "GET", "/a")
	b := w.Begin(2, "GET", "/b")
	if !a || b {
		t.Fatalf("Begin claimed the current request: first %v, second %v; want true, false", a, b)
	}
	if c := r.Read(); c.Current != "GET /a" || c.InFlight != 2 {
		t.Fatalf("current %q, in flight %d; want GET /a, 2", c.Current, c.InFlight)
	}
	w.Done(b, 200, 0)
	if c := r.Read(); c.Current != "GET /a" {
		t.Fatalf("current %q after the second ended, want GET /a", c.Current)
	}
	w.Done(a, 200, 0)
	if !w.Begin(3, "GET", "/c") {
		t.Fatal("the board stayed claimed after its request ended")
	}
}

// TestConcurrentWritersAndReader has goroutines write as a goroutine or
// event worker's do while another reads through a second mapping: every
// request is counted once, and the current request never reads torn.
func TestConcurrentWritersAndReader(t *testing.T) {
	w, r := shared(t)
	w.Init()
	w.SetState(Idle)
	const writers, each = 4, 5000
	valid := map[string]bool{"": true}
	for g := range writers {
		valid[fmt.Sprintf("GET /writer/%d/%s", g, strings.Repeat("x", 10*g))] = true
	}
	stop := make(chan struct{})
	var readerErr error
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		var last uint64
		for {
			select {
			case <-stop:
				return
			default:
			}
			c := r.Read()
			if !valid[c.Current] {
				readerErr = fmt.Errorf("torn current request %q", c.Current)
				return
			}
			if n := c.RequestCount(); n < last {
				readerErr = fmt.Errorf("requests went from %d to %d", last, n)
				return
			} else {
				last = n
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			target := fmt.Sprintf("/writer/%d/%s", g, strings.Repeat("x", 10*g))
			for i := range each {
				cur := w.Begin(int64(i+1), "GET", target)
				w.AddRead(10)
				w.Done(cur, 200+100*(i%4), time.Duration(i)*time.Microsecond)
			}
		}()
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	if readerErr != nil {
		t.Fatal(readerErr)
	}
	c := r.Read()
	var inBuckets uint64
	for _, n := range c.Buckets {
		inBuckets += n
	}
	if c.RequestCount() != writers*each || inBuckets != writers*each || c.BytesRead != 10*writers*each || c.InFlight != 0 {
		t.Fatalf("requests %d, in buckets %d, bytes read %d, in flight %d; want %d, %d, %d, 0",
			c.RequestCount(), inBuckets, c.BytesRead, c.InFlight, writers*each, writers*each, 10*writers*each)
	}
	if c.Requests != [5]uint64{0, writers * each / 4, writers * each / 4, writers * each / 4, writers * each / 4} {
		t.Fatalf("by class %v", c.Requests)
	}
}

func TestTotalsAddAndMax(t *testing.T) {
	a := Totals{Connections: 1, Requests: [5]uint64{0, 5}, DurationSum: 10, BytesRead: 3}
	a.Buckets[2] = 5
	b := Totals{Connections: 2, Requests: [5]uint64{1, 1, 0, 0, 1}, DurationSum: 1, BytesWritten: 9}
	b.ParseErrors[0] = 4
	sum := a
	sum.Add(b)
	if sum.Connections != 3 || sum.Requests != [5]uint64{1, 6, 0, 0, 1} || sum.Buckets[2] != 5 ||
		sum.DurationSum != 11 || sum.BytesRead != 3 || sum.BytesWritten != 9 || sum.ParseErrors[0] != 4 {
		t.Fatalf("Add: %+v", sum)
	}
	m := a
	m.Max(b)
	if m.Connections != 2 || m.Requests != [5]uint64{1, 5, 0, 0, 1} || m.DurationSum != 10 || m.BytesWritten != 9 {
		t.Fatalf("Max: %+v", m)
	}
}

func BenchmarkRequest(b *testing.B) {
	words := make([]uint64, Size/8)
	w, err := At(unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), Size))
	if err != nil {
		b.Fatal(err)
	}
	w.Init()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cur := w.Begin(1, "GET", "/hello")
			w.Done(cur, 200, time.Millisecond)
		}
	})
}

// TestLayoutIsVersionOne pins the words docs/architecture.md lists: a
// change to the layout is a new Version.
func TestLayoutIsVersionOne(t *testing.T) {
	var l layout
	for name, got := range map[string]uintptr{
		"started": unsafe.Offsetof(l.started), "answered": unsafe.Offsetof(l.answered),
		"durationSum": unsafe.Offsetof(l.durationSum), "bytesRead": unsafe.Offsetof(l.bytesRead),
		"parseErrors": unsafe.Offsetof(l.parseErrors), "owner": unsafe.Offsetof(l.owner),
		"curStart": unsafe.Offsetof(l.curStart), "curLen": unsafe.Offsetof(l.curLen), "curText": unsafe.Offsetof(l.curText),
	} {
		want := map[string]uintptr{"started": 4, "answered": 5, "durationSum": 65, "bytesRead": 66, "parseErrors": 68,
			"owner": 77, "curStart": 78, "curLen": 79, "curText": 80}[name]
		if got != want*8 {
			t.Errorf("%s at word %d, want %d", name, got/8, want)
		}
	}
	if Size != 95*8 || Version != 1 {
		t.Errorf("version %d of %d words, want 1 of 95", Version, Size/8)
	}
}
