package wire

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// TestEveryAPIMessageIsRegistered parses orch/api and orch/node and fails when a message type
// there (a type with a MsgName method) is missing from Default: a message added to the core
// must be given a wire form before processes can exchange it.
func TestEveryAPIMessageIsRegistered(t *testing.T) {
	registered := map[string]bool{}
	for _, n := range Default.Names() {
		registered[n] = true
	}
	for _, dir := range []string{"../../orch/api", "../../orch/node"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no sources in %s: %v", dir, err)
		}
		fset := token.NewFileSet()
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Name.Name != "MsgName" || fd.Recv == nil || len(fd.Body.List) != 1 {
					continue
				}
				ret, ok := fd.Body.List[0].(*ast.ReturnStmt)
				if !ok || len(ret.Results) != 1 {
					continue
				}
				lit, ok := ret.Results[0].(*ast.BasicLit)
				if !ok {
					continue
				}
				name := strings.Trim(lit.Value, `"`)
				if !registered[name] {
					t.Errorf("%s: message %q is not in wire.Default", fset.Position(fd.Pos()), name)
				}
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	msgs := []node.Msg{
		api.InferReq{ReqID: 7, Model: "hf:a/b/c.gguf", Prompt: "hi \"there\"\n", MaxTokens: 5, Seed: 1 << 60, Timeout: 3 * time.Second},
		api.InferDone{ReqID: 7, FinishReason: api.FinishError, Tokens: 2, Err: api.Error{Code: api.CodeWorkerLost, Message: "m", Suggestion: "s"}},
		api.HubChunk{ReqID: 1, Offset: 10, Data: []byte{0, 1, 2, 255}},
		api.ProcTerm{},
		node.PeerGone{Peer: "keeper-1"},
	}
	for _, m := range msgs {
		e, err := Default.Encode("a", "b", m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Default.Decode(e)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %s: got %#v, want %#v", m.MsgName(), got, m)
		}
	}
}

type unknownMsg struct{}

func (unknownMsg) MsgName() string { return "test.unknown" }

func TestUnknownAndMalformed(t *testing.T) {
	if _, err := Default.Encode("a", "b", unknownMsg{}); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("encoding an unregistered message: %v", err)
	}
	if _, err := Default.Decode(Envelope{From: "a", To: "b", Msg: "test.unknown"}); err == nil || !strings.Contains(err.Error(), "unknown message") {
		t.Errorf("decoding an unknown name: %v", err)
	}
	if _, err := Default.Decode(Envelope{From: "a", To: "b", Msg: "infer.req", Body: []byte(`{"req_id":"x"}`)}); err == nil {
		t.Error("a malformed body decoded")
	}
}
