package cmd

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

func init() {
	extensions = append(extensions, flagGroup{flags: privilegeFlags, apply: applyPrivileges})
}

func privilegeFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringFlag(&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Category: catProcess, EnvVars: env("user"),
			Usage: "run the workers as this user (name or number); the arbiter, as root, binds first"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "group", Aliases: []string{"g"}, Category: catProcess, EnvVars: env("group"),
			Usage: "run the workers in this group (name or number; default: the user's primary group)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "initgroups", Category: catProcess, EnvVars: env("initgroups"),
			Usage: "give the workers all the groups of --user, not just one"}),
	}
}

// applyPrivileges resolves --user and --group into the credentials the
// arbiter starts workers with.
func applyPrivileges(c *cli.Context, s *settings) error {
	name, group := c.String("user"), c.String("group")
	if name == "" && group == "" {
		return nil
	}
	uid, gid := os.Getuid(), os.Getgid()
	var u *user.User
	if name != "" {
		var err error
		if u, err = lookupUser(name); err != nil {
			return fmt.Errorf("--user: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			return fmt.Errorf("--group: %v", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if os.Geteuid() != 0 && (uid != os.Geteuid() || gid != os.Getegid()) {
		return fmt.Errorf("--user/--group: only root can run workers as another user or group (running as uid %d)", os.Geteuid())
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	if c.Bool("initgroups") && u != nil {
		ids, err := u.GroupIds()
		if err != nil {
			return fmt.Errorf("--initgroups: groups of %s: %v", u.Username, err)
		}
		cred.NoSetGroups = false
		for _, id := range ids {
			n, _ := strconv.Atoi(id)
			cred.Groups = append(cred.Groups, uint32(n))
		}
	} else if os.Geteuid() == 0 {
		cred.NoSetGroups = false // drop root's supplementary groups
		cred.Groups = []uint32{uint32(gid)}
	}
	s.arbiter.Credential = cred
	return nil
}

func lookupUser(s string) (*user.User, error) {
	if _, err := strconv.Atoi(s); err == nil {
		if u, err := user.LookupId(s); err == nil {
			return u, nil
		}
		return &user.User{Uid: s, Gid: s, Username: s}, nil
	}
	return user.Lookup(s)
}

func lookupGroup(s string) (*user.Group, error) {
	if _, err := strconv.Atoi(s); err == nil {
		if g, err := user.LookupGroupId(s); err == nil {
			return g, nil
		}
		return &user.Group{Gid: s, Name: s}, nil
	}
	return user.LookupGroup(s)
}

// giveLogFiles makes the log files writable by the workers' user: each
// worker opens them by path, and reopens them on USR1.
func giveLogFiles(s *settings) error {
	cred := s.arbiter.Credential
	if cred == nil {
		return nil
	}
	for _, path := range []string{s.arbiter.Worker.ErrorLog, s.arbiter.Worker.AccessLog} {
		if path == "" || path == "-" {
			continue
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("log file for --user: %v", err)
		}
		f.Close()
		if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("log file for --user: %v", err)
		}
	}
	return nil
}
