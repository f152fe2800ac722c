package realrun

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rbee-sim/rbee-sim/real/chaos"
	"github.com/rbee-sim/rbee-sim/real/record"
	"github.com/rbee-sim/rbee-sim/scenario"
)

// readRecords merges every process's history, times relative to the start of the run.
func (r *run) readRecords() ([]scenario.Recorded, error) {
	files, err := filepath.Glob(filepath.Join(r.o.Dir, "records", "*.jsonl"))
	if err != nil {
		return nil, err
	}
	evs, err := record.ReadFiles(files...)
	if err != nil {
		return nil, err
	}
	out := make([]scenario.Recorded, 0, len(evs))
	for _, e := range evs {
		out = append(out, scenario.Recorded{At: e.At.Sub(r.start), Kind: e.Kind, From: e.From, To: e.To, Msg: e.Msg, Obs: e.Obs})
	}
	return out, nil
}

// writeResult writes result.json (the verdict, the faults injected and left out, the
// timeline) into the run folder, and porcupine's page when linearizability failed.
func (r *run) writeResult(res scenario.Result, rr scenario.RealRun, hl *hubLog) error {
	if hl != nil {
		b, err := json.Marshal(hl)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(r.o.Dir, "hub.json"), b, 0o644); err != nil {
			return err
		}
	}
	rr.Events = nil // they are in records/
	out := resultFile{Mode: "real", Started: r.start.UnixNano(), Result: res, Skipped: rr.Skipped, Timeline: timelineOf(r.timeline),
		Scenario: r.sc, Run: rr}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.o.Dir, "result.json"), b, 0o644); err != nil {
		return err
	}
	if res.LinearizabilityFailed() {
		return res.WriteHistoryHTML(filepath.Join(r.o.Dir, "history.html"))
	}
	return nil
}

// resultFile is result.json.
type resultFile struct {
	Mode     string            `json:"mode"`
	Started  int64             `json:"started_unix_ns"`
	Result   scenario.Result   `json:"result"`
	Skipped  []string          `json:"faults_left_out"`
	Timeline []faultEvent      `json:"fault_timeline"`
	Scenario scenario.Scenario `json:"scenario"`
	// Run is what the harness read off the clients and the queen (the events are in records/).
	Run scenario.RealRun `json:"run"`
}

// faultEvent is a chaos.Event as result.json keeps it: the error as text (an error value
// would be written as {} and could not be read back).
type faultEvent struct {
	Name  string
	Step  int
	Start time.Time
	End   time.Time
	Err   string `json:",omitempty"`
}

func timelineOf(evs []chaos.Event) []faultEvent {
	out := make([]faultEvent, len(evs))
	for i, e := range evs {
		out[i] = faultEvent{Name: e.Name, Step: e.Step, Start: e.Start, End: e.End}
		if e.Err != nil {
			out[i].Err = e.Err.Error()
		}
	}
	return out
}

// JudgeDir judges a finished real run again from its folder (result.json and records/):
// after a checker changed, or after a history file was edited to see a checker bite.
func JudgeDir(dir string) (scenario.Result, error) {
	b, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if err != nil {
		return scenario.Result{}, fmt.Errorf("realrun: %s is not the folder of a real run: %w", dir, err)
	}
	var rf resultFile
	if err := json.Unmarshal(b, &rf); err != nil {
		return scenario.Result{}, fmt.Errorf("realrun: %s/result.json: %w", dir, err)
	}
	r := &run{o: Options{Dir: dir}, start: time.Unix(0, rf.Started)}
	evs, err := r.readRecords()
	if err != nil {
		return scenario.Result{}, err
	}
	rr := rf.Run
	rr.Events = evs
	var hl *hubLog
	if b, err := os.ReadFile(filepath.Join(dir, "hub.json")); err == nil {
		hl = &hubLog{}
		if err := json.Unmarshal(b, hl); err != nil {
			return scenario.Result{}, fmt.Errorf("realrun: %s/hub.json: %w", dir, err)
		}
	}
	return judge(rf.Scenario, rr, hl), nil
}
