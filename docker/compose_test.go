package docker

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/go-sql-driver/mysql"
)

// loadProject loads compose.yaml as `docker compose` would, but with no environment from the
// process or a .env file, so that the test reads the file and nothing else.
func loadProject(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"},
		cli.WithWorkingDirectory("."),
		cli.WithDiscardEnvFile,
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	project, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("load compose.yaml: %v", err)
	}
	return project
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %q: %v", name, err)
	}
	return s
}

func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	p := loadProject(t)

	var got []string
	for name := range p.Services {
		got = append(got, name)
	}
	slices.Sort(got)
	want := []string{"migrate", "mysql", "rabbitmq", "receiver", "webhookd"}
	if !slices.Equal(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}
}

func TestComposeImages(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	repoRoot, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"rabbitmq", "mysql"} {
		if s := service(t, p, name); s.Image == "" || s.Build != nil {
			t.Errorf("%s: image %q, build %v; want a published image and no build", name, s.Image, s.Build)
		}
	}

	// The worker, the migration and the receiver are one image, built from the repository.
	image := service(t, p, "webhookd").Image
	for _, name := range []string{"webhookd", "migrate", "receiver"} {
		s := service(t, p, name)
		if s.Build == nil {
			t.Errorf("%s: no build section", name)
			continue
		}
		if got := filepath.Clean(s.Build.Context); got != repoRoot {
			t.Errorf("%s: build context = %q, want the repository root %q", name, got, repoRoot)
		}
		if got := filepath.ToSlash(s.Build.Dockerfile); got != "docker/Dockerfile" {
			t.Errorf("%s: dockerfile = %q, want docker/Dockerfile", name, got)
		}
		if s.Image != image {
			t.Errorf("%s: image = %q, want %q like webhookd", name, s.Image, image)
		}
	}
}

func TestComposeCommands(t *testing.T) {
	t.Parallel()
	p := loadProject(t)

	tests := []struct {
		service string
		command []string
		restart string
	}{
		{"migrate", []string{"migrate"}, "no"},
		{"webhookd", []string{"run"}, "unless-stopped"},
		{"receiver", []string{"receive", "--addr", "0.0.0.0:8080", "--token", "demo-token"}, "unless-stopped"},
		{"rabbitmq", nil, "unless-stopped"},
		{"mysql", nil, "unless-stopped"},
	}
	for _, tt := range tests {
		s := service(t, p, tt.service)
		if tt.command != nil && !slices.Equal(s.Command, tt.command) {
			t.Errorf("%s: command = %q, want %q", tt.service, s.Command, tt.command)
		}
		if s.Restart != tt.restart {
			t.Errorf("%s: restart = %q, want %q", tt.service, s.Restart, tt.restart)
		}
	}
}

func TestComposeHealthchecks(t *testing.T) {
	t.Parallel()
	p := loadProject(t)

	tests := []struct {
		service string
		probe   string // a word the healthcheck command must contain
	}{
		{"rabbitmq", "rabbitmq-diagnostics"},
		{"mysql", "healthcheck.sh"},
	}
	for _, tt := range tests {
		hc := service(t, p, tt.service).HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) == 0 {
			t.Errorf("%s: no healthcheck", tt.service)
			continue
		}
		if !slices.Contains(hc.Test, tt.probe) {
			t.Errorf("%s: healthcheck test = %q, want it to run %s", tt.service, hc.Test, tt.probe)
		}
	}
}

func TestComposeDependencies(t *testing.T) {
	t.Parallel()
	p := loadProject(t)

	tests := []struct {
		service string
		want    map[string]string // dependency → condition
	}{
		{"webhookd", map[string]string{
			"migrate":  types.ServiceConditionCompletedSuccessfully,
			"rabbitmq": types.ServiceConditionHealthy,
			"mysql":    types.ServiceConditionHealthy,
		}},
		{"migrate", map[string]string{
			"rabbitmq": types.ServiceConditionHealthy,
			"mysql":    types.ServiceConditionHealthy,
		}},
	}
	for _, tt := range tests {
		deps := service(t, p, tt.service).DependsOn
		for dep, want := range tt.want {
			got, ok := deps[dep]
			if !ok {
				t.Errorf("%s: does not depend on %s", tt.service, dep)
				continue
			}
			if got.Condition != want {
				t.Errorf("%s: depends on %s with condition %q, want %q", tt.service, dep, got.Condition, want)
			}
		}
	}
}

func TestComposeWorkerEnvironment(t *testing.T) {
	t.Parallel()
	p := loadProject(t)
	s := service(t, p, "webhookd")

	amqpURL, err := url.Parse(env(s, "WEBHOOKD_AMQP_URL"))
	if err != nil {
		t.Fatalf("WEBHOOKD_AMQP_URL: %v", err)
	}
	if amqpURL.Scheme != "amqp" || amqpURL.Host != "rabbitmq:5672" {
		t.Errorf("WEBHOOKD_AMQP_URL = %q, want amqp://…@rabbitmq:5672/", amqpURL)
	}

	// The DSN is read by the same driver the worker uses.
	dsn, err := mysql.ParseDSN(env(s, "WEBHOOKD_MYSQL_DSN"))
	if err != nil {
		t.Fatalf("WEBHOOKD_MYSQL_DSN: %v", err)
	}
	if dsn.Net != "tcp" || dsn.Addr != "mysql:3306" || dsn.DBName != "webhookd" {
		t.Errorf("WEBHOOKD_MYSQL_DSN: net %q addr %q db %q, want tcp mysql:3306 webhookd", dsn.Net, dsn.Addr, dsn.DBName)
	}

	for key, want := range map[string]string{
		"WEBHOOKD_ADMIN_ADDR":             "0.0.0.0:9090",
		"WEBHOOKD_ALLOW_PRIVATE_NETWORKS": "true",
	} {
		if got := env(s, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}

	if !slices.ContainsFunc(s.Ports, func(port types.ServicePortConfig) bool { return port.Target == 9090 }) {
		t.Errorf("webhookd ports = %+v, want the admin port 9090 published", s.Ports)
	}
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	keyword string // upper case
	args    string
}

// parseDockerfile reads the instructions of a Dockerfile: enough of the format for these
// checks (comments, parser directives and backslash continuations), not a full parser.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out     []instruction
		pending strings.Builder
	)
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue // comments are dropped, even inside a continued instruction
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			pending.WriteString(rest + " ")
			continue
		}
		pending.WriteString(line)
		text := strings.TrimSpace(pending.String())
		pending.Reset()
		if text == "" {
			continue
		}
		keyword, args, _ := strings.Cut(text, " ")
		out = append(out, instruction{strings.ToUpper(keyword), strings.TrimSpace(args)})
	}
	if pending.Len() > 0 {
		t.Fatalf("%s: ends inside a continued line", path)
	}
	return out
}

// goMinor returns the "1.N" of go.mod's go directive.
func goMinor(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := parseDockerfile(t, "Dockerfile")

	var froms []int
	for i, in := range ins {
		if in.keyword == "FROM" {
			froms = append(froms, i)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("%d FROM lines, want a multi-stage build (at least 2)", len(froms))
	}

	// The build stage uses the Go release that go.mod asks for.
	buildImage := strings.Fields(ins[froms[0]].args)[0]
	if want := "golang:" + goMinor(t); !strings.HasPrefix(buildImage, want) {
		t.Errorf("build stage FROM %s, want %s…", buildImage, want)
	}

	var build string
	for _, in := range ins[:froms[len(froms)-1]] {
		if in.keyword == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w`} {
		if !strings.Contains(build, want) {
			t.Errorf("go build step %q lacks %s", build, want)
		}
	}

	// The final stage: a non-root user, from the image's tag or from a USER line.
	final := ins[froms[len(froms)-1]:]
	finalImage := strings.Fields(final[0].args)[0]
	nonRoot := strings.HasSuffix(finalImage, ":nonroot")
	for _, in := range final {
		if in.keyword == "USER" {
			user, _, _ := strings.Cut(in.args, ":")
			nonRoot = user != "root" && user != "0"
		}
	}
	if !nonRoot {
		t.Errorf("final stage FROM %s runs as root; want a nonroot image or a USER line", finalImage)
	}

	last := map[string]string{}
	for _, in := range final {
		last[in.keyword] = in.args
	}
	for keyword, want := range map[string]string{
		"ENTRYPOINT": `["/webhookd"]`,
		"CMD":        `["run"]`,
		"EXPOSE":     "9090",
	} {
		if got := last[keyword]; got != want {
			t.Errorf("final stage %s %s, want %s", keyword, got, want)
		}
	}
}

func TestDockerignore(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	if !slices.Contains(patterns, ".git") {
		t.Errorf("patterns %q leave .git in the build context", patterns)
	}
	// What the build needs must stay in the context.
	for _, needed := range []string{"go.mod", "go.sum", "main.go", "formatter/json.go"} {
		for _, pattern := range patterns {
			if ok, _ := filepath.Match(pattern, needed); ok || pattern == "*" || pattern == "*.go" {
				t.Errorf("pattern %q excludes %s from the build context", pattern, needed)
			}
		}
	}
}
