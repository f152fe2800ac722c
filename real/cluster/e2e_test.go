package cluster_test

// End-to-end tests with real processes: the four rbee binaries are built once (TestMain), and
// each test runs a small cluster of them on 127.0.0.1 (fresh ports and data folders), drives it
// as a user would (the public API, rbee-keeper, a harness node speaking the cluster's own
// protocol) and checks the answers against textgen, the exact completions of the CPU engine.
// Every process is stopped when its test ends; a process left running fails the test. A
// failing test prints the ends of every process's log (E2E_LOGS=1 prints them for passing
// tests too). The tests skip themselves when the go tool is not on PATH.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/catalog"
	"github.com/rbee-sim/rbee-sim/orch/gguf"
	"github.com/rbee-sim/rbee-sim/orch/keeper"
	"github.com/rbee-sim/rbee-sim/orch/node"
	"github.com/rbee-sim/rbee-sim/orch/textgen"
	"github.com/rbee-sim/rbee-sim/real"
	"github.com/rbee-sim/rbee-sim/real/chaos"
	"github.com/rbee-sim/rbee-sim/real/cluster"
	"github.com/rbee-sim/rbee-sim/real/fakehub"
	"github.com/rbee-sim/rbee-sim/real/gateway"
	"github.com/rbee-sim/rbee-sim/real/record"
)

const (
	testRepo  = "TheBloke/TinyLlama-GGUF"
	testFile  = "tiny.gguf"
	testModel = "hf:" + testRepo + "/" + testFile
	testHive  = "hive-1"
)

// newFakeHub serves a fake Hugging Face hub with the test model (a 1 MiB synthetic GGUF).
func newFakeHub(t *testing.T) (*fakehub.Server, fakehub.File, string) {
	t.Helper()
	hub := fakehub.New(fakehub.Config{})
	f, err := hub.AddGGUF(testRepo, testFile, gguf.Spec{Architecture: "llama", ContextLength: 4096, BlockCount: 22,
		Name: testFile, PayloadBytes: 1 << 20, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	t.Cleanup(srv.Close)
	return hub, f, srv.URL
}

// joined is the text of a completion.
func joined(tokens []string) string { return strings.Join(tokens, "") }

// TestE2EColdStartThroughTheFakeHub: a hive that has no worker and no model is asked (by a
// client node in the test's own process) to start a worker for a model; it downloads the
// model from the hub, past a 429, spawns the worker, and the client's request then streams
// the exact completion.
func TestE2EColdStartThroughTheFakeHub(t *testing.T) {
	c := newCluster(t, "")
	hub, file, hubURL := newFakeHub(t)
	hub.FailNext(1, http.StatusTooManyRequests, time.Second)
	q := c.queen()
	h := c.hive(q, "--catalog", "--hub-url", hubURL, "--eos-mean", "64")

	harness, err := cluster.NewHarness(cluster.HarnessConfig{DataDir: t.TempDir(), Seed: 1,
		Peers: map[node.Addr]string{"queen": q.URL, testHive: h.URL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(harness.Close)
	const prompt, seed, maxTokens = "Write a haiku about bees", 11, 24
	cfg := keeper.InferConfig{Queen: "queen", ConnectTimeout: 2 * time.Second,
		StartWorkers: []keeper.StartSpec{{Hive: testHive, Repo: testRepo, File: testFile, Device: "cpu", Slots: 2}},
		Requests:     []keeper.InferSpec{{Model: testModel, Prompt: prompt, MaxTokens: maxTokens, Seed: seed}}}
	if err := harness.RT.Add("keeper", "keeper", func() node.Node { return keeper.NewInferClient(cfg) }); err != nil {
		t.Fatal(err)
	}
	if err := harness.RT.StartAll(); err != nil {
		t.Fatal(err)
	}
	res, starts := waitInferClient(t, harness.RT, "keeper", 45*time.Second)

	if len(starts) != 1 || !starts[0].Err.OK() || starts[0].Worker == "" {
		t.Fatalf("the worker start was answered %+v; want one worker started", starts)
	}
	want, reason := textgen.Completion(prompt, seed, maxTokens, 64)
	checkResult(t, res, want, reason)
	if res.Worker != node.Addr(starts[0].Worker) {
		t.Errorf("the request was served by %s, not by the worker the hive started (%s)", res.Worker, starts[0].Worker)
	}

	st := hub.Stats()
	if st.Failed != 1 || st.ByStatus[http.StatusTooManyRequests] != 1 {
		t.Errorf("the fake hub answered %+v; want exactly one 429 (the download must have gone through it)", st)
	}
	if st.BytesServed < file.Size {
		t.Errorf("the fake hub served %d bytes; want at least the model's %d", st.BytesServed, file.Size)
	}
	path := filepath.Join(c.machineDir(), filepath.FromSlash(catalog.ModelPath("models/", "hf", testRepo+"/"+testFile)))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the model file is not on the hive's disk: %v", err)
	}
	if fi.Size() != file.Size {
		t.Errorf("the model file %s has %d bytes; the hub's has %d", path, fi.Size(), file.Size)
	}
}

// waitInferClient waits until the inference client at addr ended every request, and returns
// its first result and its worker starts.
func waitInferClient(t *testing.T, rt *real.Runtime, addr node.Addr, limit time.Duration) (keeper.InferResult, []api.WorkerStartResp) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var done bool
		var res []keeper.InferResult
		var starts []api.WorkerStartResp
		if err := rt.Inspect(addr, func(n node.Node) {
			ic := n.(*keeper.InferClient)
			done, res, starts = ic.Done(), ic.Results(), ic.StartResults()
		}); err != nil {
			t.Fatal(err)
		}
		if done {
			return res[0], starts
		}
		if time.Now().After(deadline) {
			t.Fatalf("the inference client did not finish within %v; its state: starts %+v, results %+v", limit, starts, res)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkResult checks an inference client's result: completed, with exactly the tokens of want
// (contiguous indexes), the finish reason, and no protocol violation.
func checkResult(t *testing.T, r keeper.InferResult, want []string, reason api.FinishReason) {
	t.Helper()
	if r.Outcome != keeper.OutcomeCompleted || r.ExitCode != keeper.ExitOK {
		t.Fatalf("the request ended %s (exit %d): %+v", r.Outcome, r.ExitCode, r.Err)
	}
	if len(r.Violations) > 0 {
		t.Errorf("the stream broke the protocol: %+v", r.Violations)
	}
	got := make([]string, len(r.Tokens))
	for i, tok := range r.Tokens {
		if tok.Index != i {
			t.Fatalf("token %d has index %d: the indexes are not contiguous", i, tok.Index)
		}
		got[i] = tok.Text
	}
	if joined(got) != joined(want) || len(got) != len(want) {
		t.Fatalf("the completion is %d tokens %q; textgen says %d tokens %q", len(got), joined(got), len(want), joined(want))
	}
	if r.FinishReason != reason || r.DoneTokens != len(want) {
		t.Errorf("the done says finish reason %s and %d tokens; want %s and %d", r.FinishReason, r.DoneTokens, reason, len(want))
	}
}

// streamResult is what a client of POST /v1/inference saw.
type streamResult struct {
	accepted gateway.AcceptedEvent
	tokens   []gateway.TokenEvent
	done     *gateway.DoneEvent
}

// infer runs POST /v1/inference on the queen and reads its event stream; onToken is called
// after each token (with the tokens so far).
func (c *testCluster) infer(q *cluster.Proc, body string, limit time.Duration, onToken func(streamResult)) streamResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.URL+"/v1/inference", strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		c.t.Fatalf("POST /v1/inference: %s %s: %s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	var r streamResult
	var bad error
	err = readSSE(resp.Body, func(ev sseEvent) bool {
		var v any
		switch ev.Name {
		case "accepted":
			v = &r.accepted
		case "token":
			r.tokens = append(r.tokens, gateway.TokenEvent{})
			v = &r.tokens[len(r.tokens)-1]
		case "done":
			r.done = &gateway.DoneEvent{}
			v = r.done
		default:
			bad = fmt.Errorf("unknown event %q: %s", ev.Name, ev.Data)
			return false
		}
		if err := json.Unmarshal([]byte(ev.Data), v); err != nil {
			bad = fmt.Errorf("event %s: %v: %s", ev.Name, err, ev.Data)
			return false
		}
		if ev.Name == "token" && onToken != nil {
			onToken(r)
		}
		return ev.Name != "done"
	})
	if bad == nil {
		bad = err
	}
	if bad != nil {
		c.t.Fatalf("reading the event stream after %d tokens: %v", len(r.tokens), bad)
	}
	if r.done == nil {
		c.t.Fatalf("the event stream ended after %d tokens without a done event", len(r.tokens))
	}
	return r
}

// checkStream checks a stream against textgen: contiguous indexes, exactly want, the finish
// reason and usage of the done event.
func checkStream(t *testing.T, r streamResult, prompt string, want []string, reason api.FinishReason) {
	t.Helper()
	if r.done.Error != nil {
		t.Fatalf("the stream ended with an error after %d tokens: %+v", len(r.tokens), *r.done.Error)
	}
	got := make([]string, len(r.tokens))
	for i, tok := range r.tokens {
		if tok.Index != i {
			t.Fatalf("token %d has index %d: the indexes are not contiguous", i, tok.Index)
		}
		got[i] = tok.Text
	}
	if len(got) != len(want) || joined(got) != joined(want) {
		t.Fatalf("the stream has %d tokens %q; textgen says %d tokens %q", len(got), joined(got), len(want), joined(want))
	}
	p := max(1, len(strings.Fields(prompt)))
	if u := r.done.Usage; r.done.FinishReason != reason || u.CompletionTokens != len(want) || u.PromptTokens != p || u.TotalTokens != p+len(want) {
		t.Errorf("the done event says %+v; want finish reason %s and usage %d+%d", *r.done, reason, p, len(want))
	}
}

// TestE2EWorkerKilledMidStreamFailsOver: the worker serving a stream is killed (SIGKILL) after
// some tokens; the hive sees its process die and removes it from the registry, the queen moves
// the request to the other worker, which regenerates the same tokens, and the client's stream
// goes on without a gap or a duplicate to the end.
func TestE2EWorkerKilledMidStreamFailsOver(t *testing.T) {
	c := newCluster(t, "")
	q := c.queen()
	c.hive(q, "--catalog=false", "--engine", "cpu:40", "--eos-mean", "0",
		"--worker", "id=w1,model="+testModel+",slots=2",
		"--worker", "id=w2,model="+testModel+",slots=2")
	c.waitWorkers(q, "w1", "w2")

	const prompt, seed, maxTokens = "Tell me a long story about a hive", 3, 200
	killedAt := 0
	var killed string
	r := c.infer(q, fmt.Sprintf(`{"model":"tiny","prompt":%q,"max_tokens":%d,"seed":%d}`, prompt, maxTokens, seed),
		40*time.Second, func(s streamResult) {
			if len(s.tokens) != 10 || killed != "" {
				return
			}
			killed, killedAt = string(s.accepted.Worker), len(s.tokens)
			if killed != "w1" && killed != "w2" {
				t.Fatalf("the accepted event names worker %q", killed)
			}
			if err := chaos.Kill(c.workerPID(killed)); err != nil {
				t.Fatalf("killing worker %s: %v", killed, err)
			}
		})
	if killed == "" {
		t.Fatalf("the stream ended after %d tokens, before the worker could be killed", len(r.tokens))
	}
	want, reason := textgen.Completion(prompt, seed, maxTokens, 0)
	checkStream(t, r, prompt, want, reason)
	if r.done.Worker == "" || string(r.done.Worker) == killed {
		t.Errorf("the done event names worker %q; want the other worker than %s, which was killed after %d tokens", r.done.Worker, killed, killedAt)
	}
}

// catalogClient is a port in the harness that sends catalog requests to the hive and hands
// back its answers.
type catalogClient struct {
	send    real.Send
	answers chan api.CatalogResp
}

func (cc *catalogClient) Deliver(from node.Addr, m node.Msg) {
	if r, ok := m.(api.CatalogResp); ok {
		select {
		case cc.answers <- r:
		default:
		}
	}
}

func (cc *catalogClient) Close() error { return nil }

// ask sends m (a catalog request with ReqID id) to the hive every second until the answer
// with that ReqID comes, or limit passes.
func (cc *catalogClient) ask(t *testing.T, m node.Msg, id uint64, limit time.Duration) api.CatalogResp {
	t.Helper()
	deadline := time.After(limit)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	cc.send(testHive, m)
	for {
		select {
		case r := <-cc.answers:
			if r.ReqID == id {
				return r
			}
		case <-tick.C:
			cc.send(testHive, m)
		case <-deadline:
			t.Fatalf("the hive did not answer %s within %v", m.MsgName(), limit)
		}
	}
}

// TestE2ECorruptCatalogRebuiltOnRestart: a model is downloaded into the hive's catalog
// (rbee-keeper download); the hive is stopped, its catalog file corrupted, and the hive
// started again. It comes up, says (in its history) that it rebuilt the catalog after
// corruption, keeps the bad file aside, and still lists the model.
func TestE2ECorruptCatalogRebuiltOnRestart(t *testing.T) {
	for _, how := range []chaos.Corruption{chaos.FlipHeaderByte, chaos.Garbage} {
		t.Run(how.String(), func(t *testing.T) { testCorruptCatalog(t, how) })
	}
}

func testCorruptCatalog(t *testing.T, how chaos.Corruption) {
	c := newCluster(t, "")
	hub, file, hubURL := newFakeHub(t)
	q := c.queen()
	h := c.hive(q, "--catalog", "--hub-url", hubURL)

	out, errOut, code := c.keeper("download", "--hive-url", h.URL, "--hive", testHive, "--repo", testRepo, "--file", testFile, "--timeout", "40s")
	if code != 0 || !strings.Contains(out, testModel+" is in the catalog of "+testHive) {
		t.Fatalf("rbee-keeper download exited %d; stdout %q, stderr %q", code, out, errOut)
	}
	if st := hub.Stats(); st.BytesServed < file.Size {
		t.Fatalf("the fake hub served %d bytes; want the model's %d", st.BytesServed, file.Size)
	}

	if err := h.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	if s := h.ExitState(); s == nil || !s.Success() {
		t.Fatalf("the hive did not exit cleanly on SIGTERM: %v", s)
	}
	db := filepath.Join(c.machineDir(), filepath.FromSlash(catalog.DefaultPath))
	chaosBackup, err := chaos.CorruptFile(db, how, 42)
	if err != nil {
		t.Fatal(err)
	}
	corrupt, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}

	rec := filepath.Join(t.TempDir(), "hive.jsonl")
	h.Args = append(h.Args, "--record", rec)
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	c.waitHealthy(h)

	harness, err := cluster.NewHarness(cluster.HarnessConfig{DataDir: t.TempDir(), Seed: 2,
		Peers: map[node.Addr]string{testHive: h.URL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(harness.Close)
	cc := &catalogClient{answers: make(chan api.CatalogResp, 16)}
	if err := harness.RT.AddPort("catalog-client", func(send real.Send) real.Port { cc.send = send; return cc }); err != nil {
		t.Fatal(err)
	}
	get := cc.ask(t, api.CatalogGetReq{ReqID: 1, ID: testModel}, 1, 20*time.Second)
	if !get.Err.OK() || !get.Found || get.Model.SizeBytes != file.Size || get.Model.SHA256 != file.SHA256 {
		t.Fatalf("after the rebuild the catalog answers %+v; want %s found with size %d and sha256 %s", get, testModel, file.Size, file.SHA256)
	}
	list := cc.ask(t, api.CatalogListReq{ReqID: 2, Provider: "hf", PageSize: 10}, 2, 20*time.Second)
	if !list.Err.OK() || len(list.Models) != 1 || list.Models[0].ID != testModel {
		t.Fatalf("after the rebuild the catalog lists %+v; want just %s", list, testModel)
	}

	events, err := record.ReadFiles(rec)
	if err != nil {
		t.Fatal(err)
	}
	var marked bool
	var rebuilt *api.CatalogRebuilt
	for _, e := range events {
		switch o := e.Obs.(type) {
		case node.Mark:
			marked = marked || o == "catalog rebuilt after corruption"
		case api.CatalogRebuilt:
			rebuilt = &o
		}
	}
	if !marked || rebuilt == nil {
		t.Fatalf("the hive's history (%d events) has the mark %v and the observation %+v; want both of the catalog's rebuild after corruption", len(events), marked, rebuilt)
	}
	if rebuilt.Rebuilt != 1 || rebuilt.Backup == "" {
		t.Errorf("the rebuild says %+v; want 1 model rebuilt and the corrupt file's backup named", *rebuilt)
	}
	// The bad file was moved aside, not deleted: it is byte for byte what the corruption left.
	backup := rebuilt.Backup
	if !filepath.IsAbs(backup) {
		backup = filepath.Join(c.machineDir(), filepath.FromSlash(backup))
	}
	bad, err := os.ReadFile(backup)
	if err != nil {
		t.Fatalf("the corrupt catalog was not kept aside: %v", err)
	}
	if !bytes.Equal(bad, corrupt) {
		t.Errorf("the file kept aside at %s (%d bytes) is not the corrupt catalog (%d bytes)", backup, len(bad), len(corrupt))
	}
	if orig, err := os.ReadFile(chaosBackup); err != nil || len(orig) == 0 {
		t.Errorf("chaos's own copy of the catalog before the corruption is gone: %v", err)
	}
}

// openAIRequest sends a request as the OpenAI Python SDK does (its headers, a JSON body) to
// the queen, with the API key when key is set.
func openAIRequest(t *testing.T, q *cluster.Proc, path, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, q.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "OpenAI/Python 1.54.4")
	req.Header.Set("X-Stainless-Lang", "python")
	req.Header.Set("X-Stainless-Package-Version", "1.54.4")
	req.Header.Set("X-Stainless-Runtime", "CPython")
	req.Header.Set("X-Stainless-Retry-Count", "0")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestE2EOpenAIClient: a cluster run with an API key answers requests shaped like the OpenAI
// Python SDK's: a streamed chat completion (with the usage chunk) and a plain completion, each
// exactly textgen's completion of the prompt; the same request without the key is refused with
// 401 and OpenAI's error body.
func TestE2EOpenAIClient(t *testing.T) {
	const key = "e2e-test-key-0123456789abcdef"
	c := newCluster(t, key)
	q := c.queen()
	c.hive(q, "--catalog=false", "--engine", "cpu:0", "--eos-mean", "8", "--worker", "id=w1,model="+testModel+",slots=2")
	c.waitWorkers(q, "w1")

	t.Run("chat stream", func(t *testing.T) {
		body := `{"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the bees"}],` +
			`"model":"tiny","max_tokens":32,"seed":7,"temperature":0.7,"stream":true,"stream_options":{"include_usage":true}}`
		resp := openAIRequest(t, q, "/v1/chat/completions", key, body)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("POST /v1/chat/completions: %s %s: %s", resp.Status, resp.Header.Get("Content-Type"), b)
		}
		var content strings.Builder
		var finish []string
		var usage *gateway.Usage
		var chunks int
		sawDone := false
		err := readSSE(resp.Body, func(ev sseEvent) bool {
			if ev.Data == "[DONE]" {
				sawDone = true
				return false
			}
			var ch gateway.ChatCompletion
			if err := json.Unmarshal([]byte(ev.Data), &ch); err != nil || ch.Object != "chat.completion.chunk" || !strings.HasPrefix(ch.ID, "chatcmpl-") {
				t.Fatalf("chunk %d is not a chat.completion.chunk: %s (%v)", chunks, ev.Data, err)
			}
			chunks++
			if ch.Usage != nil {
				usage = ch.Usage
			}
			for _, choice := range ch.Choices {
				if choice.Delta != nil {
					content.WriteString(choice.Delta.Content)
				}
				if choice.FinishReason != nil {
					finish = append(finish, *choice.FinishReason)
				}
			}
			return true
		})
		if err != nil || !sawDone {
			t.Fatalf("the stream ended without data: [DONE] (%v) after %d chunks", err, chunks)
		}
		prompt := "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nSay hello to the bees<|im_end|>\n<|im_start|>assistant\n"
		want, reason := textgen.Completion(prompt, 7, 32, 8)
		if content.String() != joined(want) {
			t.Fatalf("the streamed content is %q; textgen's completion of the chat prompt is %q", content.String(), joined(want))
		}
		wantFinish := "stop"
		if reason == api.FinishLength {
			wantFinish = "length"
		}
		if len(finish) != 1 || finish[0] != wantFinish {
			t.Errorf("the finish reasons are %q; want one %q", finish, wantFinish)
		}
		p := len(strings.Fields(prompt))
		if usage == nil || usage.CompletionTokens != len(want) || usage.PromptTokens != p || usage.TotalTokens != p+len(want) {
			t.Errorf("the usage chunk says %+v; want %d prompt and %d completion tokens", usage, p, len(want))
		}
	})

	t.Run("completion", func(t *testing.T) {
		const prompt = "Once upon a time"
		resp := openAIRequest(t, q, "/v1/completions", key, `{"model":"tiny","prompt":"`+prompt+`","max_tokens":12,"seed":5}`)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /v1/completions: %s: %s", resp.Status, b)
		}
		var cmpl gateway.Completion
		if err := json.Unmarshal(b, &cmpl); err != nil || cmpl.Object != "text_completion" || len(cmpl.Choices) != 1 || cmpl.Usage == nil {
			t.Fatalf("the answer is not one text_completion (%v): %s", err, b)
		}
		want, reason := textgen.Completion(prompt, 5, 12, 8)
		if cmpl.Choices[0].Text != joined(want) {
			t.Fatalf("the completion is %q; textgen says %q", cmpl.Choices[0].Text, joined(want))
		}
		wantFinish := "stop"
		if reason == api.FinishLength {
			wantFinish = "length"
		}
		if f := cmpl.Choices[0].FinishReason; f == nil || *f != wantFinish || cmpl.Usage.CompletionTokens != len(want) || cmpl.Usage.PromptTokens != 4 {
			t.Errorf("the answer is %s; want finish reason %s, 4 prompt and %d completion tokens", b, wantFinish, len(want))
		}
	})

	t.Run("no key", func(t *testing.T) {
		for _, key := range []string{"", "not-the-key"} {
			resp := openAIRequest(t, q, "/v1/chat/completions", key, `{"messages":[{"role":"user","content":"hi"}],"model":"tiny","stream":true}`)
			b, _ := io.ReadAll(resp.Body)
			var e struct {
				Error struct {
					Code, Message, Type string
				} `json:"error"`
			}
			if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(b, &e) != nil || e.Error.Code != "UNAUTHORIZED" ||
				e.Error.Type != "authentication_error" || e.Error.Message == "" {
				t.Errorf("with key %q: %s %s; want 401 with an authentication_error body", key, resp.Status, b)
			}
		}
	})
}

// TestE2EKeeperInfer: rbee-keeper infer, the user's command, prints exactly the completion and
// exits 0; interrupted (SIGINT, as Ctrl+C) after its first output it exits 130.
func TestE2EKeeperInfer(t *testing.T) {
	c := newCluster(t, "")
	q := c.queen()
	c.hive(q, "--catalog=false", "--engine", "cpu:40", "--eos-mean", "0", "--worker", "id=w1,model="+testModel+",slots=2")
	c.waitWorkers(q, "w1")

	t.Run("completes", func(t *testing.T) {
		const prompt = "Write a haiku about bees"
		out, errOut, code := c.keeper("infer", "--queen-url", q.URL, "--model", "tiny", "--prompt", prompt, "--max-tokens", "20", "--seed", "1")
		want, _ := textgen.Completion(prompt, 1, 20, 0)
		if code != 0 || out != joined(want)+"\n" {
			t.Fatalf("rbee-keeper infer exited %d and printed %q (stderr %q); want exit 0 and %q", code, out, errOut, joined(want)+"\n")
		}
		if !strings.Contains(errOut, "20 tokens") || !strings.Contains(errOut, "finish reason length") {
			t.Errorf("rbee-keeper infer's summary on stderr is %q; want 20 tokens, finish reason length", errOut)
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bins.Path(cluster.Keeper), "infer", "--queen-url", q.URL, "--model", "tiny",
			"--prompt", "Tell me everything about bees", "--max-tokens", "400", "--seed", "2")
		cmd.Env = append(os.Environ(), c.env...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		first := make([]byte, 1)
		if _, err := io.ReadFull(stdout, first); err != nil {
			cmd.Wait()
			t.Fatalf("rbee-keeper infer printed nothing (%v); stderr %q", err, stderr.String())
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(stdout)
		err = cmd.Wait()
		out := string(first) + string(rest)
		c.keeperLogs = append(c.keeperLogs, fmt.Sprintf("rbee-keeper infer (interrupted): %v\n  stdout %q\n  stderr %s", err, out, stderr.String()))
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 130 {
			t.Fatalf("rbee-keeper infer ended with %v after SIGINT; want exit code 130 (stderr %q)", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "CANCELLED") {
			t.Errorf("rbee-keeper infer's stderr after SIGINT is %q; want the queen's CANCELLED (the request cancelled there)", stderr.String())
		}
		want, _ := textgen.Completion("Tell me everything about bees", 2, 400, 0)
		if printed := strings.TrimSuffix(out, "\n"); len(printed) >= len(joined(want)) || !strings.HasPrefix(joined(want), printed) {
			t.Errorf("rbee-keeper infer printed %q before the interrupt: want a proper prefix of the completion", out)
		}
	})
}
