// Package web holds the Fraise console's built web application, embedded
// in the binary so that a deployment serves the console without a file
// tree beside it.
package web

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Assets returns the built application rooted at dist: index.html (the
// application shell), login.html (the only page an unauthenticated client
// is served) and the files they load.
func Assets() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded above: fs.Sub fails only on a bad name
	}
	return sub
}
