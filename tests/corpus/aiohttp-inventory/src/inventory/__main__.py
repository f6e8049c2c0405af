from inventory.app import main

main()
