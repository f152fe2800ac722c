package scenario

// DeclaredMarks are the rare paths of the core that the standard soak (every scenario, seeds
// 1-3: `rbee-sim run` with no flags) must reach. TestDeclaredMarksAreReached fails when one is
// not: a scenario stopped exercising what it claims to. The soak report lists each with its hit
// count, zero included.
var DeclaredMarks = []string{
	"capability changed by re-registration",
	"catalog rebuilt after corruption",
	"catalog restored from backup",
	"checksum mismatch, retrying",
	"download restarted after 200",
	"download resumed after restart",
	"download waiting for another process's lease",
	"hive avoided a port conflict",
	"hive detected a lost worker",
	"hive re-registered after queen restart",
	"hive respawning a worker",
	"hive retired a drained worker",
	"hive shutdown: KILL after stop grace",
	"inference cancelled: client went away",
	"inference failed over",
	"log compacted",
	"regenerated token suppressed",
	"registry restored from log",
	"retry after 429",
	"stale worker removed when its request ended",
	"stale worker revived",
	"worker crashed",
	"worker deadline exceeded while generating",
	"worker fell back after device fault",
	"worker generation timeout",
	"worker start: downloading the model",
}
