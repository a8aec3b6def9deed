module github.com/exportstream/exportstream/internal

go 1.26.0
