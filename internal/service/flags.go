package service

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"
)

// Flags is a flag set whose defaults come from environment variables: each
// flag names its variable, which its usage line shows. A malformed variable
// is an error from Parse, never a silent fallback to the default.
type Flags struct {
	set     *flag.FlagSet
	errs    []error
	secrets []secretFlag

	// LogLevel and Healthcheck are every service's: -log-level and
	// -healthcheck (GET /healthz of the server on addr, exit 0 on 200).
	LogLevel    slog.Level
	Healthcheck bool
}

// NewFlags returns the flags of the command name; -help prints to w.
func NewFlags(name string, w io.Writer) *Flags {
	f := &Flags{set: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.set.SetOutput(w)
	f.set.TextVar(&f.LogLevel, "log-level", env(f, "LOG_LEVEL", slog.LevelInfo, parseLevel, "a log level"), "debug, info, warn or error (LOG_LEVEL)")
	f.set.BoolVar(&f.Healthcheck, "healthcheck", false, "GET /healthz of the server on -addr (via 127.0.0.1) and exit 0 if it answers 200, 1 otherwise: the container healthcheck")
	return f
}

// String defines -name, defaulting to $key when set and not empty, else def.
func (f *Flags) String(p *string, name, key, def, usage string) {
	f.set.StringVar(p, name, env(f, key, def, func(v string) (string, error) { return v, nil }, ""), withKey(usage, key))
}

// StringOrEmpty is String for a setting where an empty $key means
// something (as opposed to "use the default"): set, even empty, it wins.
func (f *Flags) StringOrEmpty(p *string, name, key, def, usage string) {
	if v, ok := os.LookupEnv(key); ok {
		def = v
	}
	f.set.StringVar(p, name, def, withKey(usage, key))
}

// Command defines -name with no environment variable: a one-off task the
// command runs instead of serving (like -healthcheck).
func (f *Flags) Command(p *string, name, usage string) {
	f.set.StringVar(p, name, "", usage)
}

// Int defines an integer -name with $key as its default.
func (f *Flags) Int(p *int, name, key string, def int, usage string) {
	f.set.IntVar(p, name, env(f, key, def, strconv.Atoi, "an integer"), withKey(usage, key))
}

// Float defines a number -name with $key as its default.
func (f *Flags) Float(p *float64, name, key string, def float64, usage string) {
	parse := func(v string) (float64, error) { return strconv.ParseFloat(v, 64) }
	f.set.Float64Var(p, name, env(f, key, def, parse, "a number"), withKey(usage, key))
}

// Bool defines a boolean -name with $key as its default.
func (f *Flags) Bool(p *bool, name, key string, def bool, usage string) {
	f.set.BoolVar(p, name, env(f, key, def, strconv.ParseBool, "a boolean"), withKey(usage, key))
}

// OnOff defines -name taking "on" or "off" (the default), with $key as
// its default: a switch named as operators write it (SCENARIOS=on).
func (f *Flags) OnOff(p *bool, name, key, usage string) {
	*p = env(f, key, false, parseOnOff, "on or off")
	f.set.Func(name, withKey(usage+" (on or off; default off)", key), func(v string) error {
		on, err := parseOnOff(v)
		*p = on
		return err
	})
}

func parseOnOff(v string) (bool, error) {
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not on or off", v)
}

// Duration defines a duration -name with $key as its default.
func (f *Flags) Duration(p *time.Duration, name, key string, def time.Duration, usage string) {
	f.set.DurationVar(p, name, env(f, key, def, time.ParseDuration, "a duration like 30s"), withKey(usage, key))
}

// Parse reports malformed environment variables, then parses args. -help
// returns an error matching flag.ErrHelp after printing the usage.
func (f *Flags) Parse(args []string) error {
	if err := errors.Join(f.errs...); err != nil {
		return err
	}
	if err := f.set.Parse(args); err != nil {
		return fmt.Errorf("parse flags: %w", err)
	}
	return f.checkSecrets()
}

func withKey(usage, key string) string { return usage + " (" + key + ")" }

func parseLevel(v string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(v))
	return l, err
}

// env is $key parsed, def when it is unset or empty, and def with an error
// recorded when it does not parse.
func env[T any](f *Flags, key string, def T, parse func(string) (T, error), what string) T {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("%s=%q: not %s", key, v, what))
		return def
	}
	return x
}
