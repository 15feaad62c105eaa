// Command probe clones a repository the way Kaniko's git build context does
// (chainguard-dev/kaniko pkg/buildcontext/git.go: go-git PlainClone, http.BasicAuth from
// GIT_USERNAME and GIT_PASSWORD, RecurseSubmodules when --git=recurse-submodules=true), so a
// test can see where go-git sends those credentials. It is built against the go-git version
// that tests/controlplane/kaniko/go.mod pins (see tests/support/gogit.py).
//
//	probe URL [recurse]
package main

import (
	"fmt"
	"os"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/transport/http"
)

func main() {
	dir, err := os.MkdirTemp("", "gogitprobe-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	options := &git.CloneOptions{
		URL:  os.Args[1],
		Auth: &http.BasicAuth{Username: os.Getenv("GIT_USERNAME"), Password: os.Getenv("GIT_PASSWORD")},
	}
	if len(os.Args) > 2 && os.Args[2] == "recurse" {
		options.RecurseSubmodules = git.DefaultSubmoduleRecursionDepth
	}
	_, err = git.PlainClone(dir, false, options)
	fmt.Println("clone:", err)
}
