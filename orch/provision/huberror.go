package provision

import (
	"fmt"

	"github.com/rbee-sim/rbee-sim/orch/api"
	"github.com/rbee-sim/rbee-sim/orch/node"
)

// PlantRetryTerminal retries a 404, 401 or 403 from the hub like a 5xx, with backoff, instead of
// ending the download at once (see orch/plant).
const PlantRetryTerminal = "provisioner-retry-terminal"

// hubError handles an error answer of the hub: 429 (and 503 with Retry-After) waits exactly
// Retry-After; other 5xx back off; 416 starts the file over; 404, 401 and 403 end the download
// at once, naming the cause: retrying them only asks the hub again for what it refused for good.
func (p *Provisioner) hubError(env node.Env, d *download, m api.HubResp) {
	why := fmt.Sprintf("hub answered %d %s %s", m.Status, m.ErrorCode, m.Message)
	switch {
	case m.Status == 429 || (m.Status == 503 && m.RetryAfter > 0):
		env.Observe(node.Mark("retry after 429"))
		after := m.RetryAfter
		if p.cfg.Plants.Has(PlantIgnoreRetryAfter) {
			after = 0
		}
		if until := env.Now().Add(after); until.After(p.hubNotBefore) {
			p.hubNotBefore = until
		}
		p.retry(env, d, why, after)
	case m.Status >= 500:
		p.retry(env, d, why, 0)
	case m.Status == 416: // the range starts past the file's end: start over
		p.truncate(env, d, 0)
		d.haveMeta = false
		p.retry(env, d, why, 0)
	case m.Status == 404 || m.Status == 401 && m.ErrorCode == "RepoNotFound":
		// The real hub answers 401 RepoNotFound for a repository that does not exist, or is
		// private and the token cannot see it: the same as a 404 for the person.
		env.Observe(node.Mark("download failed: not found"))
		if p.cfg.Plants.Has(PlantRetryTerminal) {
			p.retry(env, d, why, 0)
			return
		}
		if err := env.Disk().Remove(d.partial()); err != nil && !node.IsNotExist(err) {
			env.Log().Warn("provision: cannot remove partial file", "file", d.id, "err", err)
		}
		p.fail(env, d, notFound(d.req, m))
	case m.Status == 401 || m.Status == 403:
		env.Observe(node.Mark("download failed: gated"))
		if p.cfg.Plants.Has(PlantRetryTerminal) {
			p.retry(env, d, why, 0)
			return
		}
		p.syncPartial(env, d)
		p.fail(env, d, api.Errorf(CodeDownloadFailed, fmt.Sprintf("accept the model's licence "+
			"at https://huggingface.co/%s and set HF_TOKEN to a token with access to it", d.req.Repo),
			"repository %s is gated: the hub answered %d (%s)", d.req.Repo, m.Status, m.ErrorCode))
	default:
		p.syncPartial(env, d)
		p.fail(env, d, api.Errorf(CodeDownloadFailed, "report this hub answer",
			"unexpected answer downloading %s: %s", d.name(), why))
	}
}

// notFound names what a 404 says is missing: the repository, the revision or the file.
func notFound(r Request, m api.HubResp) api.Error {
	switch m.ErrorCode {
	case "RepoNotFound":
		return api.Errorf(CodeDownloadFailed, "check the repository name (owner/name), or set "+
			"HF_TOKEN if it is private", "repository %s not found on the hub", r.Repo)
	case "RevisionNotFound":
		return api.Errorf(CodeDownloadFailed, "check the revision (a branch, tag or commit)",
			"revision %s of repository %s not found on the hub", r.Revision, r.Repo)
	default:
		return api.Errorf(CodeDownloadFailed, "check the file name; list the repository's files "+
			"on https://huggingface.co/"+r.Repo, "file %s not found in repository %s at revision %s",
			r.File, r.Repo, r.Revision)
	}
}
