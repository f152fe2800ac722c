package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/rbee-sim/rbee-sim/orch/textgen"
)

// fakeLlama mimics llama-server: /health (503 "Loading model" for the first loadingPolls
// polls, then 200 {"status":"ok"}), /slots (each POST /completion holds a slot while its
// handler runs) and /completion (an SSE stream of textgen's tokens with comment lines,
// malformed lines and unknown fields mixed in, unless stream overrides it).
type fakeLlama struct {
	srv     *httptest.Server
	eosMean int

	mu           sync.Mutex
	loadingPolls int
	healthCalls  int
	slots        []bool // processing, per slot
	allBusy      bool   // /slots shows every slot processing
	slotsStatus  int    // not 0: /slots answers this status
	slotGets     int
	postStatus   int // not 0: /completion answers this status with an error body
	retryAfter   string
	posts        []llamaBody
	// stream, when set, writes the completion's stream instead of the default.
	stream func(w http.ResponseWriter, r *http.Request, b llamaBody)
	// oldFields makes the default final chunk say only stopped_eos/stopped_limit.
	oldFields bool
	// noBlankLines makes the default stream leave out the blank line between events.
	noBlankLines bool
}

// llamaBody is what the engine posts to /completion.
type llamaBody struct {
	Prompt      string  `json:"prompt"`
	NPredict    int     `json:"n_predict"`
	Seed        uint64  `json:"seed"`
	Stream      bool    `json:"stream"`
	CachePrompt bool    `json:"cache_prompt"`
	Temperature float64 `json:"temperature"`
}

func newFakeLlama(t *testing.T, slots, eosMean int) *fakeLlama {
	f := &fakeLlama{eosMean: eosMean, slots: make([]bool, slots)}
	f.srv = httptest.NewServer(f.mux())
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLlama) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", f.health)
	mux.HandleFunc("GET /slots", f.slotsList)
	mux.HandleFunc("POST /completion", f.completion)
	return mux
}

func (f *fakeLlama) health(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.healthCalls++
	loading := f.healthCalls <= f.loadingPolls
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if loading {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`)
		return
	}
	fmt.Fprint(w, `{"status":"ok"}`)
}

func (f *fakeLlama) slotsList(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slotGets++
	if f.slotsStatus != 0 {
		w.WriteHeader(f.slotsStatus)
		fmt.Fprint(w, `{"error":{"code":501,"message":"This server does not support slots endpoint.","type":"not_supported_error"}}`)
		return
	}
	type slot struct {
		ID           int            `json:"id"`
		IsProcessing bool           `json:"is_processing"`
		NCtx         int            `json:"n_ctx"`
		Params       map[string]any `json:"params"`
	}
	list := make([]slot, len(f.slots))
	for i, busy := range f.slots {
		list[i] = slot{ID: i, IsProcessing: busy || f.allBusy, NCtx: 4096, Params: map[string]any{"seed": 1}}
	}
	json.NewEncoder(w).Encode(list)
}

// takeSlot marks a free slot processing and returns it (-1 if none: the server would queue).
func (f *fakeLlama) takeSlot() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, busy := range f.slots {
		if !busy {
			f.slots[i] = true
			return i
		}
	}
	return -1
}

func (f *fakeLlama) freeSlot(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= 0 {
		f.slots[i] = false
	}
}

func (f *fakeLlama) completion(w http.ResponseWriter, r *http.Request) {
	var b llamaBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.posts = append(f.posts, b)
	status, retry, stream := f.postStatus, f.retryAfter, f.stream
	f.mu.Unlock()
	if status != 0 {
		refuse(w, status, retry, fmt.Sprintf(`{"error":{"code":%d,"message":"fake refusal %d","type":"unavailable_error"}}`, status, status))
		return
	}
	slot := f.takeSlot()
	defer f.freeSlot(slot)
	w.Header().Set("Content-Type", "text/event-stream")
	if stream != nil {
		stream(w, r, b)
		return
	}
	f.defaultStream(w, b, slot)
}

// defaultStream writes textgen's completion for the body, the way llama-server does, with
// noise a lenient reader must skip.
func (f *fakeLlama) defaultStream(w http.ResponseWriter, b llamaBody, slot int) {
	f.mu.Lock()
	oldFields, noBlank := f.oldFields, f.noBlankLines
	f.mu.Unlock()
	sep := "\n\n"
	if noBlank {
		sep = "\n"
	}
	texts, reason := textgen.Completion(b.Prompt, b.Seed, b.NPredict, f.eosMean)
	fl := w.(http.Flusher)
	fmt.Fprint(w, ": a comment line\n\n")
	for i, text := range texts {
		chunk, _ := json.Marshal(map[string]any{"index": 0, "content": text, "tokens": []int{i}, "stop": false,
			"id_slot": slot, "tokens_predicted": i + 1, "tokens_evaluated": 3, "unknown": map[string]int{"x": 1}})
		fmt.Fprintf(w, "data: %s%s", chunk, sep)
		if noBlank {
			fmt.Fprint(w, ": keep-alive\n")
			fl.Flush()
			continue
		}
		switch i % 4 {
		case 0:
			fmt.Fprint(w, "data: {this is not json\n\n")
		case 1:
			fmt.Fprint(w, ": keep-alive\nevent: message\nid: 7\nretry: 100\n\n")
		case 2:
			// A line without a field name, then an empty token (llama.cpp holds back
			// incomplete UTF-8): not a token.
			fmt.Fprintf(w, "a line without a field name\n\n\ndata: {\"content\":\"\",\"stop\":false,\"id_slot\":%d}\n\n", slot)
		}
		fl.Flush()
	}
	final := map[string]any{"content": "", "stop": true, "id_slot": slot, "tokens_predicted": len(texts),
		"timings": map[string]float64{"predicted_per_second": 50}, "truncated": false}
	if oldFields {
		final["stopped_eos"] = reason == "stop"
		final["stopped_limit"] = reason == "length"
		final["stopped_word"] = false
	} else {
		final["stop_type"] = map[bool]string{true: "eos", false: "limit"}[reason == "stop"]
	}
	chunk, _ := json.Marshal(final)
	fmt.Fprintf(w, "data: %s\n\n", chunk)
	fl.Flush()
}

func (f *fakeLlama) counts() (health, slotGets, posts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.healthCalls, f.slotGets, len(f.posts)
}

func (f *fakeLlama) set(edit func(f *fakeLlama)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	edit(f)
}

// sseWrite writes lines to w and flushes.
func sseWrite(w http.ResponseWriter, lines ...string) {
	for _, l := range lines {
		fmt.Fprint(w, l)
	}
	w.(http.Flusher).Flush()
}

// refuse answers a fake server's refusal: status, an optional Retry-After, and the server's
// own JSON error body.
func refuse(w http.ResponseWriter, status int, retryAfter, body string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}
