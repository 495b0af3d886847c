package golden

import (
	"bytes"
	"strings"
)

// Archive is a txtar-like file: a free-form comment, then sections that
// each start with a line "-- name --". It is the format of
// golang.org/x/tools/txtar, written out here so the module needs no
// dependency for it.
type Archive struct {
	Comment  []byte
	Sections []Section
}

// Section is one named part of an Archive. Data ends with a newline unless
// it is empty.
type Section struct {
	Name string
	Data []byte
}

// ParseArchive splits data into its comment and sections.
func ParseArchive(data []byte) *Archive {
	a := &Archive{}
	var cur *Section
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		if name, ok := sectionName(line); ok {
			a.Sections = append(a.Sections, Section{Name: name})
			cur = &a.Sections[len(a.Sections)-1]
			continue
		}
		if cur == nil {
			a.Comment = append(a.Comment, line...)
		} else {
			cur.Data = append(cur.Data, line...)
		}
	}
	for i := range a.Sections {
		if d := a.Sections[i].Data; len(d) > 0 && d[len(d)-1] != '\n' {
			a.Sections[i].Data = append(d, '\n')
		}
	}
	return a
}

func sectionName(line []byte) (string, bool) {
	s := strings.TrimRight(string(line), "\r\n")
	if !strings.HasPrefix(s, "-- ") || !strings.HasSuffix(s, " --") || len(s) < 7 {
		return "", false
	}
	name := strings.TrimSpace(s[3 : len(s)-3])
	return name, name != ""
}

// Get returns a section's data and whether it is present.
func (a *Archive) Get(name string) ([]byte, bool) {
	for _, s := range a.Sections {
		if s.Name == name {
			return s.Data, true
		}
	}
	return nil, false
}

// Set replaces a section's data, or appends the section.
func (a *Archive) Set(name string, data []byte) {
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	for i := range a.Sections {
		if a.Sections[i].Name == name {
			a.Sections[i].Data = data
			return
		}
	}
	a.Sections = append(a.Sections, Section{Name: name, Data: data})
}

// Format writes the archive back in its file form.
func (a *Archive) Format() []byte {
	var b bytes.Buffer
	b.Write(a.Comment)
	for _, s := range a.Sections {
		b.WriteString("-- " + s.Name + " --\n")
		b.Write(s.Data)
	}
	return b.Bytes()
}
